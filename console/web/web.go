// Package web holds the web console's pages: plain HTML, CSS and ES
// modules that browsers load as they are, with no build step, using
// Preact and htm vendored from npm (vendor/VENDOR.md says how, and
// vendor/check proves the files are the published ones).
//
// The pages fetch everything from relative URLs ("api/v1/status"), so
// the console may serve them under any base path; they need a
// Content-Security-Policy of default-src 'self' and nothing more: no
// inline script or style, no eval.
package web

import "embed"

// FS holds the pages, index.html at its root. It is read-only data, the
// same for every console.
//
//go:embed index.html favicon.svg *.js *.css vendor/preact/*.mjs vendor/preact/LICENSE vendor/htm/*.mjs vendor/htm/LICENSE
var FS embed.FS

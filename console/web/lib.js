// lib.js gathers the vendored libraries under the names the pages use.
import { h, render, Fragment } from "./vendor/preact/preact.mjs";
import {
  useState, useEffect, useLayoutEffect, useRef, useMemo, useCallback,
} from "./vendor/preact/hooks.mjs";
import htm from "./vendor/htm/htm.mjs";

export const html = htm.bind(h);
export {
  h, render, Fragment,
  useState, useEffect, useLayoutEffect, useRef, useMemo, useCallback,
};

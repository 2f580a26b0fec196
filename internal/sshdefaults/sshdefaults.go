// Package sshdefaults holds the SSH defaults that the configuration and the
// broker both need: the broker uses them, and the configuration applies
// ssh_config's relative lists ("Ciphers +aes128-cbc") to them. It depends
// on nothing, so config stays a leaf.
package sshdefaults

// Ciphers prefers AES-GCM: it has assembly in Go on amd64 and arm64, and
// is several times faster than Go's chacha20-poly1305. Callers must not
// modify it.
var Ciphers = []string{
	"aes128-gcm@openssh.com", "aes256-gcm@openssh.com",
	"chacha20-poly1305@openssh.com",
	"aes128-ctr", "aes192-ctr", "aes256-ctr",
}

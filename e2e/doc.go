// Package e2e runs shunt as users do: as root, in network namespaces, with
// Debian's OpenSSH sshd as the gateway and real clients (socat, curl). The
// tests are Linux's: network namespaces and veth pairs are what they are
// built from, so every test file has a linux build constraint.
package e2e

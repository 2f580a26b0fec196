package demo

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"os"

	"golang.org/x/crypto/ssh"
)

// writeKey writes a new ed25519 key in OpenSSH format to file (0600) and
// its public half to file.pub, and returns the public key's
// authorized_keys line.
func writeKey(file, comment string) (string, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", err
	}
	blk, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(file, pem.EncodeToMemory(blk), 0o600); err != nil {
		return "", err
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		return "", err
	}
	line := string(ssh.MarshalAuthorizedKey(sp))
	line = line[:len(line)-1] + " " + comment + "\n"
	return line, os.WriteFile(file+".pub", []byte(line), 0o644)
}

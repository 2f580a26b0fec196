package console

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// TokenFile is the login token's file in the state directory.
const TokenFile = "console.token"

// WriteToken makes a new login token and writes it to dir's TokenFile,
// mode 0600, replacing the one of the last start (so a token seen once
// is good only until shunt starts again). dir is made (0700) if missing.
func WriteToken(dir string) (string, error) {
	tok, err := NewToken()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("console: the token's directory: %w", err)
	}
	path := filepath.Join(dir, TokenFile)
	tmp, err := os.CreateTemp(dir, TokenFile+".*")
	if err != nil {
		return "", fmt.Errorf("console: writing the token: %w", err)
	}
	defer os.Remove(tmp.Name())
	// CreateTemp makes it 0600 already; whatever the umask, say so.
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return "", fmt.Errorf("console: writing the token: %w", err)
	}
	if _, err := tmp.WriteString(tok + "\n"); err != nil {
		tmp.Close()
		return "", fmt.Errorf("console: writing the token: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("console: writing the token: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", fmt.Errorf("console: writing the token: %w", err)
	}
	return tok, nil
}

// ErrNoToken: no running shunt serves a console there (no token file).
var ErrNoToken = errors.New("no console token")

// ReadToken reads the login token a running shunt wrote to dir.
func ReadToken(dir string) (string, error) {
	return ReadTokenFile(filepath.Join(dir, TokenFile))
}

// ReadTokenFile reads the login token from its file.
func ReadTokenFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("%w: %s does not exist", ErrNoToken, path)
	}
	if err != nil {
		return "", err
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("%w: %s is empty", ErrNoToken, path)
	}
	return tok, nil
}

// RemoveToken removes the token file as shunt stops: no token outlives
// the console it opens.
func RemoveToken(dir string) error {
	err := os.Remove(filepath.Join(dir, TokenFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

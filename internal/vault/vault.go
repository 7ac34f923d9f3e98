// Package vault is jml's built-in credential vault: it makes API keys and
// passwords, hashes what only needs verifying, and seals (AES-256-GCM) what
// must be recoverable, under a master key that never leaves the process.
//
// It does no storage of its own: callers keep the hashes and ciphertexts.
// It must never log or return a secret except to the one caller that asked
// for it to be made or opened.
package vault

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// APIKeyPrefix starts every API key jml issues, so that secret scanners and
// people recognise one in a log or a repository.
const APIKeyPrefix = "jml_"

// TokenPrefix starts every token for jml's own API.
const TokenPrefix = "jmlt_"

// NewSecret returns prefix followed by 32 random bytes (256 bits) in
// unpadded base64url.
func NewSecret(r io.Reader, prefix string) (string, error) {
	var b [32]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return "", fmt.Errorf("random: %w", err)
	}
	return prefix + base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// NewPassword returns a 32-character password from a 64-symbol alphabet
// (192 bits), safe to pass unquoted to most systems.
func NewPassword(r io.Reader) (string, error) {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	var b [32]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return "", fmt.Errorf("random: %w", err)
	}
	for i := range b {
		b[i] = alphabet[b[i]&63]
	}
	return string(b[:]), nil
}

// Hash is how an API key or token is stored: SHA-256 of the secret. A slow
// password hash is not needed: the secret carries 256 random bits, so the
// hash cannot be brute-forced, and lookups stay one index probe.
func Hash(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// Fingerprint is a short public identifier of a secret: the first 8 bytes
// of its hash, in hex.
func Fingerprint(secret string) string {
	return hex.EncodeToString(Hash(secret)[:8])
}

// Sealer encrypts and decrypts recoverable secrets with AES-256-GCM. It is
// safe for concurrent use.
type Sealer struct {
	aead cipher.AEAD
}

// KeySize is the master key's length in bytes.
const KeySize = 32

// NewSealer returns a Sealer for a 32-byte key.
func NewSealer(key []byte) (*Sealer, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("master key is %d bytes, want %d", len(key), KeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Sealer{aead: aead}, nil
}

// Seal encrypts plaintext bound to ad (the owning row's ID, so a ciphertext
// copied to another row does not open) and returns nonce || ciphertext.
func (s *Sealer) Seal(r io.Reader, plaintext, ad []byte) ([]byte, error) {
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(plaintext)+s.aead.Overhead())
	if _, err := io.ReadFull(r, nonce); err != nil {
		return nil, fmt.Errorf("random: %w", err)
	}
	return s.aead.Seal(nonce, nonce, plaintext, ad), nil
}

// Open decrypts what Seal returned for the same ad.
func (s *Sealer) Open(sealed, ad []byte) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(sealed) < n {
		return nil, errors.New("sealed secret is truncated")
	}
	out, err := s.aead.Open(nil, sealed[:n], sealed[n:], ad)
	if err != nil {
		return nil, errors.New("sealed secret does not open with this master key")
	}
	return out, nil
}

// KeyCheck is a public check value of the master key: HMAC-SHA256 of a
// fixed label. Stored in the database on first start, it lets every later
// start (and every replica) prove it holds the same key without revealing
// it, so a wrong or replaced key fails loudly instead of sealing secrets
// that no other process can open.
func KeyCheck(key []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("jml vault master key check v1"))
	return hex.EncodeToString(m.Sum(nil))
}

// ParseKey decodes a master key given as 64 hex digits or as base64 of 32
// bytes.
func ParseKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if b, err := hex.DecodeString(s); err == nil && len(b) == KeySize {
		return b, nil
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil && len(b) == KeySize {
			return b, nil
		}
	}
	return nil, errors.New("master key must be 32 bytes as 64 hex digits or base64")
}

// LoadKey returns the master key: from envValue when set (JML_MASTER_KEY),
// else from the file at path. When neither exists and create is true, it
// makes a new random key and writes it to path with mode 0600, so that a
// first start needs no setup; the second return says it did.
func LoadKey(envValue, path string, create bool) (key []byte, created bool, err error) {
	if envValue != "" {
		k, err := ParseKey(envValue)
		if err != nil {
			return nil, false, fmt.Errorf("JML_MASTER_KEY: %w", err)
		}
		return k, false, nil
	}
	data, err := os.ReadFile(path)
	if err == nil {
		k, err := ParseKey(string(data))
		if err != nil {
			return nil, false, fmt.Errorf("master key file %s: %w", path, err)
		}
		return k, false, nil
	}
	if !errors.Is(err, os.ErrNotExist) || !create {
		return nil, false, fmt.Errorf("master key: set JML_MASTER_KEY or create %s: %w", path, err)
	}
	k := make([]byte, KeySize)
	if _, err := rand.Read(k); err != nil {
		return nil, false, err
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, false, err
		}
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, false, fmt.Errorf("create master key file: %w", err)
	}
	defer f.Close()
	if _, err := f.WriteString(hex.EncodeToString(k) + "\n"); err != nil {
		return nil, false, err
	}
	return k, true, f.Close()
}

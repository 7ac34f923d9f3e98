package vault

import (
	"bytes"
	"crypto/rand"
	"path/filepath"
	"strings"
	"testing"
)

func TestSecretShape(t *testing.T) {
	a, err := NewSecret(rand.Reader, APIKeyPrefix)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewSecret(rand.Reader, APIKeyPrefix)
	if !strings.HasPrefix(a, "jml_") || len(a) != 4+43 || a == b {
		t.Fatalf("NewSecret = %q, %q", a, b)
	}
	if fp := Fingerprint(a); len(fp) != 16 || strings.Contains(a, fp) {
		t.Fatalf("Fingerprint = %q", fp)
	}
	if bytes.Equal(Hash(a), Hash(b)) || len(Hash(a)) != 32 {
		t.Fatal("Hash does not separate keys")
	}
	p, _ := NewPassword(rand.Reader)
	if len(p) != 32 {
		t.Fatalf("password %q", p)
	}
}

func TestSealer(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	s, err := NewSealer(key)
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := s.Seal(rand.Reader, []byte("hunter2"), []byte("cred_1"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte("hunter2")) {
		t.Fatal("ciphertext contains the plaintext")
	}
	got, err := s.Open(sealed, []byte("cred_1"))
	if err != nil || string(got) != "hunter2" {
		t.Fatalf("Open = %q, %v", got, err)
	}
	if _, err := s.Open(sealed, []byte("cred_2")); err == nil {
		t.Fatal("Open with another row's ID succeeded")
	}
	sealed[len(sealed)-1] ^= 1
	if _, err := s.Open(sealed, []byte("cred_1")); err == nil {
		t.Fatal("Open of a tampered ciphertext succeeded")
	}
	if _, err := NewSealer(key[:16]); err == nil {
		t.Fatal("NewSealer accepted a 16-byte key")
	}
}

func TestLoadKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "jml.key")
	if _, _, err := LoadKey("", path, false); err == nil {
		t.Fatal("LoadKey without key and create=false succeeded")
	}
	k1, created, err := LoadKey("", path, true)
	if err != nil || !created || len(k1) != 32 {
		t.Fatalf("LoadKey create = %x, %v, %v", k1, created, err)
	}
	k2, created, err := LoadKey("", path, true)
	if err != nil || created || !bytes.Equal(k1, k2) {
		t.Fatalf("LoadKey second = %x, %v, %v", k2, created, err)
	}
	if _, _, err := LoadKey("too-short", path, true); err == nil || !strings.Contains(err.Error(), "JML_MASTER_KEY") {
		t.Fatalf("bad env key error = %v", err)
	}
	k3, _, err := LoadKey(strings.Repeat("ab", 32), path, true)
	if err != nil || k3[0] != 0xab {
		t.Fatalf("hex env key = %x, %v", k3, err)
	}
}

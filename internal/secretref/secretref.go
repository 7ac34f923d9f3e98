// Package secretref resolves references to secrets kept outside files in
// git: "env:NAME" is an environment variable, "file:PATH" a file (one
// trailing newline dropped). A value that is not a reference is refused,
// and no error repeats it.
package secretref

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// Check validates the form of ref without resolving it.
func Check(ref string) error {
	if ref == "" {
		return errors.New("is required (env:NAME or file:PATH)")
	}
	name, ok := strings.CutPrefix(ref, "env:")
	if !ok {
		name, ok = strings.CutPrefix(ref, "file:")
	}
	if !ok {
		return errors.New("must be a reference, env:NAME or file:PATH; secrets are never written in the policy or config")
	}
	if name == "" {
		return fmt.Errorf("%q names nothing", ref)
	}
	return nil
}

// Resolve returns the secret ref names; getenv nil means os.Getenv.
func Resolve(ref string, getenv func(string) string) (string, error) {
	if err := Check(ref); err != nil {
		return "", err
	}
	if getenv == nil {
		getenv = os.Getenv
	}
	if name, ok := strings.CutPrefix(ref, "env:"); ok {
		v := getenv(name)
		if v == "" {
			return "", fmt.Errorf("environment variable %s is not set", name)
		}
		return v, nil
	}
	path := strings.TrimPrefix(ref, "file:")
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	v := strings.TrimSuffix(strings.TrimSuffix(string(data), "\n"), "\r")
	if v == "" {
		return "", fmt.Errorf("file %s is empty", path)
	}
	return v, nil
}

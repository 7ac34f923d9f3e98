package testsvc

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// StartRedisTLS starts a private redis-server that serves only TLS, on a
// free port, with a certificate from a CA in Server.TLS.CA, keeping
// nothing on disk.
func StartRedisTLS() (*Server, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("redis-server not found: install Debian's redis-server package")
	}
	s, err := newServer("redis")
	if err != nil {
		return nil, err
	}
	dir := s.dir
	fail := func(err error) (*Server, error) {
		s.Stop()
		return nil, fmt.Errorf("private redis: %w", err)
	}
	if s.TLS, err = WriteTLSFiles(dir, os.Getuid(), os.Getgid()); err != nil {
		return fail(err)
	}
	port, err := freePort()
	if err != nil {
		return fail(err)
	}
	if err := s.start(nil, bin, "--port", "0", "--tls-port", strconv.Itoa(port), "--tls-cert-file", s.TLS.Cert,
		"--tls-key-file", s.TLS.Key, "--tls-ca-cert-file", s.TLS.CA, "--tls-auth-clients", "no",
		"--save", "", "--appendonly", "no", "--dir", dir); err != nil {
		return fail(err)
	}
	s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	pem, err := os.ReadFile(s.TLS.CA)
	if err != nil {
		return fail(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	err = s.waitFor(20*time.Second, func() error {
		c := goredis.NewClient(&goredis.Options{Addr: s.Addr, TLSConfig: &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}, MaxRetries: -1})
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return c.Ping(ctx).Err()
	})
	if err != nil {
		return fail(err)
	}
	return s, nil
}

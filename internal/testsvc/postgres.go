package testsvc

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
)

// PostgresAdmin is the superuser of a private PostgreSQL server.
const PostgresAdmin = "jml_admin"

// StartPostgres initialises and starts a private PostgreSQL server that
// authenticates every TCP login by password (scram-sha-256), on a free
// port, with fsync off (test data only). With withTLS it also accepts
// TLS, with a certificate from a CA in Server.TLS.CA.
func StartPostgres(withTLS ...bool) (*Server, error) {
	bin, err := newestGlob("/usr/lib/postgresql/*/bin", "Debian's postgresql package")
	if err != nil {
		return nil, err
	}
	cred, uid, gid, err := runAs("postgres")
	if err != nil {
		return nil, err
	}
	s, err := newServer("postgres")
	if err != nil {
		return nil, err
	}
	dir := s.dir
	fail := func(err error) (*Server, error) {
		s.Stop()
		return nil, fmt.Errorf("private postgres: %w", err)
	}
	password := randomPassword()
	s.Password = password
	if err := os.WriteFile(filepath.Join(dir, "pw"), []byte(password+"\n"), 0o600); err != nil {
		return fail(err)
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		return fail(err)
	}
	if err := os.Chown(filepath.Join(dir, "pw"), uid, gid); err != nil {
		return fail(err)
	}
	data := filepath.Join(dir, "data")
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", data, "-U", PostgresAdmin, "--pwfile", filepath.Join(dir, "pw"),
		"--auth=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync")
	initdb.SysProcAttr = sysProcAttr(cred)
	if out, err := initdb.CombinedOutput(); err != nil {
		return fail(fmt.Errorf("initdb: %v\n%s", err, out))
	}
	port, err := freePort()
	if err != nil {
		return fail(err)
	}
	var tlsArgs []string
	if len(withTLS) > 0 && withTLS[0] {
		if s.TLS, err = WriteTLSFiles(dir, uid, gid); err != nil {
			return fail(err)
		}
		tlsArgs = []string{"-c", "ssl=on", "-c", "ssl_cert_file=" + s.TLS.Cert, "-c", "ssl_key_file=" + s.TLS.Key}
	}
	args := append([]string{"-D", data, "-p", strconv.Itoa(port), "-k", dir,
		"-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		"-c", "max_connections=200", "-c", "shared_buffers=32MB"}, tlsArgs...)
	if err := s.start(cred, filepath.Join(bin, "postgres"), args...); err != nil {
		return fail(err)
	}
	s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	s.URL = fmt.Sprintf("postgres://%s:%s@%s/postgres?sslmode=disable", PostgresAdmin, password, s.Addr)
	err = s.waitFor(30*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, s.URL)
		if err != nil {
			return err
		}
		return c.Close(ctx)
	})
	if err != nil {
		return fail(err)
	}
	return s, nil
}

// Package testsvc starts private servers for tests: servers this machine
// does not run, or runs with settings a test cannot use (the shared
// PostgreSQL trusts every local login, so a test of passwords needs one of
// its own). Each server gets its own port and data directory and is
// stopped and removed by Stop. A server that cannot start is an error,
// never a skip.
package testsvc

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"time"
)

// Server is a running private server.
type Server struct {
	// URL connects as the server's administrator.
	URL string
	// Addr is host:port.
	Addr string
	// Password is the administrator's password.
	Password string
	// TLS are the server's certificate files, when it serves TLS.
	TLS TLSFiles
	// TLSURL is the slapd's ldaps:// URL, when it serves TLS.
	TLSURL string
	dir    string
	cmd    *exec.Cmd
	done   chan error
	log    string
}

// Stop shuts the server down and removes its data.
func (s *Server) Stop() error {
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
			s.cmd.Process.Kill()
			<-s.done
		}
	}
	return os.RemoveAll(s.dir)
}

// newServer makes a server's data directory (jml-test<name>-*), with its
// log in it.
func newServer(name string) (*Server, error) {
	dir, err := os.MkdirTemp("", "jml-test"+name+"-")
	if err != nil {
		return nil, err
	}
	return &Server{dir: dir, log: filepath.Join(dir, name+".log"), done: make(chan error, 1)}, nil
}

// randomPassword is 128 random bits in hex.
func randomPassword() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// start runs the server's command (its output to the server's log, as
// cred when not nil) and watches for its exit.
func (s *Server) start(cred *syscall.Credential, bin string, args ...string) error {
	logf, err := os.Create(s.log)
	if err != nil {
		return err
	}
	defer logf.Close()
	s.cmd = exec.Command(bin, args...)
	s.cmd.SysProcAttr = sysProcAttr(cred)
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	if err := s.cmd.Start(); err != nil {
		return err
	}
	go func() { s.done <- s.cmd.Wait() }()
	return nil
}

// Log returns what the server wrote to its log, for failure messages.
func (s *Server) Log() string {
	data, _ := os.ReadFile(s.log)
	return string(data)
}

// freePort asks the kernel for an unused TCP port on 127.0.0.1.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// runAs returns the credential a server must run under: servers such as
// PostgreSQL refuse to run as root, so as root they run as the named
// system user; otherwise as the current user.
func runAs(name string) (*syscall.Credential, int, int, error) {
	if os.Geteuid() != 0 {
		return nil, os.Getuid(), os.Getgid(), nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("running as root, need system user %q to run the server: %w", name, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, uid, gid, nil
}

// newestGlob returns the last match of pattern in lexical order (the
// newest versioned directory), or an error naming what to install.
func newestGlob(pattern, install string) (string, error) {
	m, _ := filepath.Glob(pattern)
	if len(m) == 0 {
		return "", fmt.Errorf("%s not found (install %s)", pattern, install)
	}
	sort.Strings(m)
	return m[len(m)-1], nil
}

// waitFor polls ready every 50 ms until it succeeds, the server exits, or
// the timeout passes.
func (s *Server) waitFor(timeout time.Duration, ready func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := ready()
		if err == nil {
			return nil
		}
		select {
		case exitErr := <-s.done:
			s.done <- exitErr
			return fmt.Errorf("server exited while starting (%v); log:\n%s", exitErr, s.Log())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return errors.Join(fmt.Errorf("server not ready after %s; log:\n%s", timeout, s.Log()), err)
		}
	}
}

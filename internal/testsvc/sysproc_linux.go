package testsvc

import "syscall"

// sysProcAttr runs a child under cred (nil: as this process), in its own
// process group so that a signal to the test does not reach it first.
func sysProcAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred, Setpgid: true}
}

// Package child runs a bench program again as a child process (a server to
// measure beside the real binary) and reads the one line it reports when
// it is ready.
package child

import (
	"bufio"
	"errors"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"
)

// Process is a running child.
type Process struct {
	// Line is what the child printed first (its address, say), trimmed.
	Line  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
}

// Start runs this very program with args and waits (up to 30 s) for the
// first line it prints on stdout. The child runs until Stop closes its stdin.
func Start(args ...string) (*Process, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, args...) // #nosec G204 -- this very program
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &Process{cmd: cmd, stdin: stdin}
	line := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(stdout).ReadString('\n')
		line <- strings.TrimSpace(l)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case l := <-line:
		if l != "" {
			p.Line = l
			return p, nil
		}
	case <-time.After(30 * time.Second):
	}
	p.Stop()
	return nil, errors.New("the child process did not report that it is ready")
}

// PID is the child's process ID.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Stop closes the child's stdin and waits (bounded) for it to exit.
func (p *Process) Stop() {
	_ = p.stdin.Close()
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
}

package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/loquent/twilio-voice-operator/hack/bench/internal/cpu"
)

// childLifetime bounds a child server that is never told to stop.
const childLifetime = 30 * time.Minute

// runChild serves the bridge for a parent bench (-server-process): it
// prints the server's address and its stats address on one line, answers
// GET /stats[?mem=1] with serverStats, and stops when stdin closes.
func runChild(calls int, agentURL string) error {
	srv, err := startBridgeServer(calls, agentURL)
	if err != nil {
		return err
	}
	defer srv.stop()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		st := serverStats{CPU: cpu.Process(), Dropped: srv.dropped()}
		if r.URL.Query().Get("mem") == "1" {
			m := measureMemory()
			st.Heap, st.Stack = m.heap, m.stack
		}
		_ = json.NewEncoder(w).Encode(st)
	})
	go func() { _ = (&http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}).Serve(ln) }()
	fmt.Printf("%s %s\n", srv.addr, ln.Addr())
	eof := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); close(eof) }()
	select {
	case <-eof:
	case <-time.After(childLifetime):
	}
	return nil
}

// childServer is the bridge server in a child process (this executable, run
// with -child-server), so that it has a Go runtime of its own.
type childServer struct {
	addr, statsURL string
	cmd            *exec.Cmd
	stdin          io.WriteCloser
	client         *http.Client
}

func startChildServer(calls int, agentURL string) (*childServer, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, "-child-server", "-calls", strconv.Itoa(calls), "-agent-url", agentURL) // #nosec G204 -- this very program
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
	c := &childServer{cmd: cmd, stdin: stdin, client: &http.Client{Timeout: 30 * time.Second}}
	line := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(stdout).ReadString('\n')
		line <- l
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case l := <-line:
		addr, stats, ok := strings.Cut(strings.TrimSpace(l), " ")
		if ok {
			c.addr, c.statsURL = addr, "http://"+stats+"/stats"
			return c, nil
		}
	case <-time.After(30 * time.Second):
	}
	c.stop()
	return nil, errors.New("child server did not report its address")
}

func (c *childServer) address() string { return c.addr }

func (c *childServer) stats(mem bool) serverStats {
	var st serverStats
	u := c.statsURL
	if mem {
		u += "?mem=1"
	}
	resp, err := c.client.Get(u)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child server stats:", err)
		return st
	}
	defer func() { _ = resp.Body.Close() }()
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		fmt.Fprintln(os.Stderr, "child server stats:", err)
	}
	return st
}

// stop closes the child's stdin and waits for it to exit, killing it (by
// its own process handle) if it has not within 15 s.
func (c *childServer) stop() {
	_ = c.stdin.Close()
	done := make(chan struct{})
	go func() { _ = c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = c.cmd.Process.Kill()
		<-done
	}
}

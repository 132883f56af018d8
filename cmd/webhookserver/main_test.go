package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"testing"
)

// TestMain lets the test binary act as the webhookserver binary (the main
// process is re-executed with WEBHOOKSERVER_MAIN=1), so exit codes and
// stderr are observed as a user would see them.
func TestMain(m *testing.M) {
	if os.Getenv("WEBHOOKSERVER_MAIN") == "1" {
		os.Exit(run(os.Args[1:]))
	}
	os.Exit(m.Run())
}

func TestBadFlagsExitNonZeroNamingTheFlag(t *testing.T) {
	cases := []struct {
		name string
		args []string
		flag string
	}{
		{"no public URL", []string{"--stream-token-key-file=/k"}, "--public-url"},
		{"http public URL", []string{"--public-url=http://x", "--stream-token-key-file=/k"}, "--public-url"},
		{"no token key", []string{"--public-url=https://x"}, "--stream-token-secret"},
		{"bad duration", []string{"--public-url=https://x", "--stream-token-key-file=/k", "--shutdown-grace-period=soon"}, "shutdown-grace-period"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], c.args...)
			cmd.Env = append(os.Environ(), "WEBHOOKSERVER_MAIN=1")
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 2 {
				t.Fatalf("want exit code 2, got %v; stderr:\n%s", err, stderr.String())
			}
			if !bytes.Contains(stderr.Bytes(), []byte(c.flag)) {
				t.Fatalf("stderr does not name %s:\n%s", c.flag, stderr.String())
			}
		})
	}
}

func TestHelpExitsZero(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-h")
	cmd.Env = append(os.Environ(), "WEBHOOKSERVER_MAIN=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("-h: %v\n%s", err, out)
	}
	if !bytes.Contains(out, []byte("-public-url")) {
		t.Fatalf("usage does not list --public-url:\n%s", out)
	}
}

// Package devenv starts the whole system on one machine, for `make demo` and
// the e2e test: a throwaway control plane (kube-apiserver and etcd, via
// envtest) with the CRDs, the Twilio emulator, and the manager, webhook server
// and sample agent as real processes. Stop removes every process and the
// temporary directory.
package devenv

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/loquent/twilio-voice-operator/controllers"
	"github.com/loquent/twilio-voice-operator/internal/controlplane"
	"github.com/loquent/twilio-voice-operator/internal/twiliosim"
)

// Emulated Twilio account used by the demo and the e2e test (tokens must be
// alphanumeric for twilio-go).
const (
	AccountSID = "ACde400000000000000000000000000001"
	AuthToken  = "demoAuthToken0123456789"
)

// Options configure Start.
type Options struct {
	// Root is the repository root (for config/crd/bases).
	Root string
	// BinDir holds manager, webhookserver and sampleagent (see Build).
	BinDir string
	// Log receives progress lines; nil discards them.
	Log io.Writer
	// PollInterval is the manager's --poll-interval (default 10s).
	PollInterval time.Duration
	// Users, when set, returns the kubeconfig each process runs with (by
	// process name: "manager", "webhookserver"); nil runs them as cluster admin.
	Users func(env *Env, process string) (kubeconfig string, err error)
	// CredentialsSecret and GuardKeySecret (namespace/name) are the manager's
	// Secrets: the tokens it publishes for the webhook server, and its guard
	// key. Defaults: default/twilio-voice-operator-webhook-credentials and
	// default/twilio-voice-operator-guard-key.
	CredentialsSecret, GuardKeySecret string
	// EventSinkURL, when set, is the TwilioAccount's spec.events.sink.url in
	// SampleYAML: where the webhook server delivers the account's
	// recording and message events as CloudEvents (see StartEventSink).
	EventSinkURL string
	// StandaloneEmulator runs the Twilio emulator as its own process
	// (cmd/twiliosim) holding SampleNumbers; Env.Emulator is then nil and
	// Twilio's state is read over its REST API. Otherwise it runs in this
	// process and the caller adds numbers (AddSampleNumbers).
	StandaloneEmulator bool
}

// Env is a running local system.
type Env struct {
	// Dir is the temporary directory (kubeconfig, logs, keys); removed by Stop.
	Dir string
	// Kubeconfig is an admin kubeconfig for kubectl.
	Kubeconfig string
	// Config is the admin rest.Config.
	Config *rest.Config
	// Emulator is the in-process Twilio emulator (nil with StandaloneEmulator);
	// EmulatorURL is its base URL either way.
	Emulator    *twiliosim.Server
	EmulatorURL string
	// PublicURL is the webhook server's base URL (http, loopback).
	PublicURL string
	// VoiceURL is where the manager points numbers: PublicURL/twilio/voice
	// with the install marker of its default --install-id.
	VoiceURL string
	// AgentURL is the sample agent's Media Streams endpoint; AgentStatsURL its /stats.
	AgentURL, AgentStatsURL string
	// ControlPlane is the envtest environment.
	ControlPlane *envtest.Environment

	opts  Options
	procs []*process
}

type process struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

// Build compiles the binaries Start runs into binDir.
func Build(ctx context.Context, root, binDir string, log io.Writer) error {
	logf(log, "Building manager, webhookserver, sampleagent, twiliosim and the kubectl-twilio plugin")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", binDir+string(os.PathSeparator),
		"./cmd/manager", "./cmd/webhookserver", "./cmd/sampleagent", "./cmd/twiliosim", "./cmd/kubectl-twilio")
	cmd.Dir, cmd.Stdout, cmd.Stderr = root, os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build: %w", err)
	}
	return nil
}

// Start brings the system up. On error everything started so far is stopped.
func Start(ctx context.Context, o Options) (env *Env, err error) {
	if o.PollInterval == 0 {
		o.PollInterval = 10 * time.Second
	}
	if o.CredentialsSecret == "" {
		o.CredentialsSecret = "default/twilio-voice-operator-webhook-credentials"
	}
	if o.GuardKeySecret == "" {
		o.GuardKeySecret = "default/twilio-voice-operator-guard-key"
	}
	dir, err := os.MkdirTemp("", "twilio-voice-demo-")
	if err != nil {
		return nil, err
	}
	env = &Env{Dir: dir, opts: o}
	defer func() {
		if err != nil {
			env.Stop()
			env = nil
		}
	}()

	logf(o.Log, "Starting a local control plane (kube-apiserver + etcd)")
	if env.ControlPlane, env.Config, err = controlplane.Start(o.Root, true); err != nil {
		return env, err
	}
	if env.Kubeconfig, err = env.WriteKubeconfig("admin", []string{"system:masters"}); err != nil {
		return env, err
	}

	ports, err := freePorts(6)
	if err != nil {
		return env, err
	}
	if err := env.startEmulator(ctx, ports[5]); err != nil {
		return env, err
	}
	webhookAddr, whProbe, mgrProbe, agentAddr := ports[0], ports[1], ports[2], ports[3]
	env.PublicURL = "http://" + webhookAddr
	env.VoiceURL = controllers.InstallVoiceURL(env.PublicURL, controllers.DefaultInstallID(env.PublicURL))
	env.AgentURL = "ws://" + agentAddr + "/media"
	env.AgentStatsURL = "http://" + agentAddr + "/stats"

	keyFile := filepath.Join(dir, "stream-token.key")
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return env, err
	}
	// A text key, as the docs tell users to make (openssl rand -base64 48).
	if err := os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
		return env, err
	}

	if err := env.spawn(ctx, "sampleagent", "", "--listen="+agentAddr, "--path=/media"); err != nil {
		return env, err
	}
	if err := env.spawn(ctx, "manager", env.kubeconfigFor("manager"),
		"--public-url="+env.PublicURL, "--allow-http-public-url",
		"--poll-interval="+o.PollInterval.String(),
		// The emulator is the only Twilio API here; credentials go nowhere else.
		"--allowed-api-urls="+env.EmulatorURL,
		"--webhook-credentials-secret="+o.CredentialsSecret, "--guard-key-secret="+o.GuardKeySecret,
		"--allow-loopback-agents", // the sample agent listens on 127.0.0.1
		"--metrics-bind-address=0", "--health-probe-bind-address="+mgrProbe); err != nil {
		return env, err
	}
	if err := env.spawn(ctx, "webhookserver", env.kubeconfigFor("webhookserver"),
		"--public-url="+env.PublicURL, "--allow-http-public-url",
		"--credentials-secret="+o.CredentialsSecret,
		"--listen-address="+webhookAddr, "--metrics-bind-address="+ports[4],
		"--health-probe-bind-address="+whProbe, "--stream-token-key-file="+keyFile,
		"--shutdown-grace-period=2s",
		// The sample agent listens on 127.0.0.1; a cluster's agents never do.
		"--allow-loopback-agents"); err != nil {
		return env, err
	}
	for _, probe := range []struct{ name, url string }{
		{"manager", "http://" + mgrProbe + "/readyz"},
		{"webhookserver", "http://" + whProbe + "/readyz"},
		{"sampleagent", env.AgentStatsURL},
	} {
		if err := env.waitHTTP(ctx, probe.name, probe.url, 60*time.Second); err != nil {
			return env, err
		}
	}
	logf(o.Log, "Manager, webhook server (%s) and sample agent (%s) are ready", env.PublicURL, env.AgentURL)
	return env, nil
}

func (e *Env) startEmulator(ctx context.Context, addr string) error {
	if !e.opts.StandaloneEmulator {
		logf(e.opts.Log, "Starting the Twilio emulator")
		e.Emulator = twiliosim.New()
		e.Emulator.AddAccount(twiliosim.Account{SID: AccountSID, AuthToken: AuthToken, FriendlyName: "Demo customer (emulated)"})
		var err error
		e.EmulatorURL, err = e.Emulator.Start("127.0.0.1:0")
		return err
	}
	logf(e.opts.Log, "Starting the Twilio emulator as a process, with the sample numbers")
	file := filepath.Join(e.Dir, "numbers.json")
	if err := os.WriteFile(file, sampleNumbersJSON(), 0o600); err != nil {
		return err
	}
	if err := e.spawn(ctx, "twiliosim", "", "--listen="+addr, "--account-sid="+AccountSID,
		"--auth-token="+AuthToken, "--numbers-file="+file); err != nil {
		return err
	}
	e.EmulatorURL = "http://" + addr
	// Unauthenticated, the emulator answers 401: it is up.
	return e.waitHTTP(ctx, "twiliosim", e.EmulatorURL+"/2010-04-01/Accounts/"+AccountSID+".json", 30*time.Second, http.StatusUnauthorized)
}

func (e *Env) kubeconfigFor(process string) string {
	if e.opts.Users == nil {
		return e.Kubeconfig
	}
	kc, err := e.opts.Users(e, process)
	if err != nil {
		return "" // spawn reports a missing kubeconfig
	}
	return kc
}

// WriteKubeconfig creates a user in the control plane (client certificate)
// and writes a kubeconfig for it into Dir.
func (e *Env) WriteKubeconfig(name string, groups []string) (string, error) {
	path := filepath.Join(e.Dir, name+".kubeconfig")
	return path, controlplane.WriteKubeconfig(e.ControlPlane, path, name, groups...)
}

func (e *Env) spawn(ctx context.Context, name, kubeconfig string, args ...string) error {
	if (name == "manager" || name == "webhookserver") && kubeconfig == "" {
		return fmt.Errorf("no kubeconfig for %s", name)
	}
	logPath := filepath.Join(e.Dir, name+".log")
	out, err := os.Create(logPath)
	if err != nil {
		return err
	}
	cmd := exec.Command(filepath.Join(e.opts.BinDir, name), args...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		out.Close()
		return fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); out.Close(); close(p.done) }()
	e.procs = append(e.procs, p)
	return nil
}

func (e *Env) waitHTTP(ctx context.Context, name, url string, limit time.Duration, want ...int) error {
	if len(want) == 0 {
		want = []int{http.StatusOK}
	}
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		for _, p := range e.procs {
			select {
			case <-p.done:
				return fmt.Errorf("%s exited: %s", p.name, e.Tail(p.name, 20))
			default:
			}
		}
		if resp, err := http.Get(url); err == nil { //nolint:gosec // loopback probe of our own process
			resp.Body.Close()
			if slices.Contains(want, resp.StatusCode) {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s not ready at %s after %s: %s", name, url, limit, e.Tail(name, 20))
}

// Tail returns the last n lines of a process's log.
func (e *Env) Tail(name string, n int) string {
	data, err := os.ReadFile(filepath.Join(e.Dir, name+".log"))
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Kubectl runs kubectl against the control plane as admin and returns its
// output. The binaries' directory leads PATH, so kubectl finds the
// kubectl-twilio plugin there (`kubectl twilio ...`).
func (e *Env) Kubectl(ctx context.Context, args ...string) (string, error) {
	bin, err := controlplane.Kubectl(e.opts.Root)
	if err != nil {
		return "", err
	}
	// KUBECONFIG rather than --kubeconfig: kubectl refuses flags before a plugin's name.
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+e.Kubeconfig, "PATH="+e.opts.BinDir+string(os.PathListSeparator)+os.Getenv("PATH"),
		// The plugin talks to the emulator, which only the demo's own flag allows.
		"KUBECTL_TWILIO_ALLOWED_API_URLS="+e.EmulatorURL,
		// What the manager points numbers at, for `kubectl twilio plan`.
		"KUBECTL_TWILIO_PUBLIC_URL="+e.PublicURL, "KUBECTL_TWILIO_INSTALL_ID="+controllers.DefaultInstallID(e.PublicURL))
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// Stop ends the processes (SIGTERM, then SIGKILL after 10s), the emulator and
// the control plane, and removes Dir. It is safe to call more than once.
func (e *Env) Stop() {
	for i := len(e.procs) - 1; i >= 0; i-- {
		p := e.procs[i]
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
		}
	}
	e.procs = nil
	if e.Emulator != nil {
		_ = e.Emulator.Close()
		e.Emulator = nil
	}
	if e.ControlPlane != nil && e.Config != nil {
		_ = e.ControlPlane.Stop()
		e.ControlPlane = nil
	}
	if e.Dir != "" {
		_ = os.RemoveAll(e.Dir)
		e.Dir = ""
	}
}

func freePorts(n int) ([]string, error) {
	var addrs []string
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, errors.Join(errors.New("find a free port"), err)
		}
		ls = append(ls, l)
		addrs = append(addrs, l.Addr().String())
	}
	return addrs, nil
}

func logf(w io.Writer, format string, args ...any) {
	if w != nil {
		fmt.Fprintf(w, "• "+format+"\n", args...)
	}
}

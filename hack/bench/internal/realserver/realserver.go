// Package realserver runs the real webhookserver binary for the bench
// commands: built from cmd/webhookserver, started as its own process against
// a throwaway control plane (internal/controlplane, envtest) holding N routed
// TwilioPhoneNumbers and the published credentials of one account, exactly
// what it reads in a cluster. The benches then reach it over loopback, and
// read its CPU from /proc and its memory and counters from its /metrics.
package realserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	twiliov1 "github.com/loquent/twilio-voice-operator/api/v1alpha1"
	"github.com/loquent/twilio-voice-operator/internal/controlplane"
	"github.com/loquent/twilio-voice-operator/internal/credentials"
)

// The account every bench number belongs to, and the public URL the server
// checks signatures over.
const (
	PublicURL  = "https://voice.bench.test"
	AccountSID = "AC0000000000000000000000000000be"
	AuthToken  = "bench-auth-token-0123456789abcdef"
	namespace  = "bench"
	credsName  = "webhook-credentials"
	tokenKey   = "bench-stream-token-key-0123456789abcdef"
)

// Number returns the E.164 number of routed number i.
func Number(i int) string { return fmt.Sprintf("+1415%07d", i) }

// Options says what the server routes.
type Options struct {
	Root     string // the repository root
	Numbers  int    // numbers 0..Numbers-1 are routed
	AgentURL string // every number's agent
	Record   bool   // whether calls are recorded (one more TwiML verb)
}

// Server is a running webhookserver process and its control plane.
type Server struct {
	Addr       string // host:port of the Twilio routes
	MetricsURL string // http://host:port/metrics
	Pid        int
	LogPath    string // its stderr (JSON logs)

	env  *envtest.Environment
	cmd  *exec.Cmd
	done chan struct{}
	dir  string
}

// Root finds the repository from where make (the root) or a developer
// (a bench's directory) runs a bench.
func Root() string {
	for _, d := range []string{".", "../../..", "../.."} {
		if _, err := os.Stat(filepath.Join(d, "config", "crd", "bases")); err == nil {
			return d
		}
	}
	return "."
}

// Build compiles cmd/webhookserver into dir and returns the binary's path.
func Build(root, dir string) (string, error) {
	bin := filepath.Join(dir, "webhookserver")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/webhookserver")
	cmd.Dir, cmd.Stdout, cmd.Stderr = root, os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build ./cmd/webhookserver: %w", err)
	}
	return bin, nil
}

// Start builds the binary, starts the control plane, creates the routed
// numbers and runs the server until it is ready. Stop it when done.
func Start(ctx context.Context, o Options) (s *Server, err error) {
	dir, err := os.MkdirTemp("", "bench-webhookserver-")
	if err != nil {
		return nil, err
	}
	s = &Server{dir: dir, LogPath: filepath.Join(dir, "webhookserver.log")}
	defer func() {
		if err != nil {
			s.Stop()
		}
	}()
	bin, err := Build(o.Root, dir)
	if err != nil {
		return s, err
	}
	env, cfg, err := controlplane.Start(o.Root, true)
	if err != nil {
		return s, err
	}
	s.env = env
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(twiliov1.AddToScheme(scheme))
	k8s, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return s, err
	}
	if err := seed(ctx, k8s, o); err != nil {
		return s, err
	}
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := controlplane.WriteKubeconfig(env, kubeconfig, "bench-webhookserver", "system:masters"); err != nil {
		return s, err
	}
	keyFile := filepath.Join(dir, "stream-token-key")
	if err := os.WriteFile(keyFile, []byte(tokenKey+"\n"), 0o600); err != nil {
		return s, err
	}
	return s, s.run(bin, kubeconfig, keyFile)
}

// seed creates the namespace, the published credentials and the numbers,
// each with the status the operator writes once it found it in the account.
func seed(ctx context.Context, k8s client.Client, o Options) error {
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}); err != nil {
		return fmt.Errorf("create namespace: %w", err)
	}
	published, err := json.Marshal(credentials.Published{Accounts: []credentials.Account{
		{Namespace: namespace, Name: "main", AccountSID: AccountSID, AuthToken: AuthToken},
	}})
	if err != nil {
		return err
	}
	if err := k8s.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: credsName},
		Data:       map[string][]byte{credentials.Key: published},
	}); err != nil {
		return fmt.Errorf("create credentials secret: %w", err)
	}
	return parallel(o.Numbers, 8, func(i int) error { return createNumber(ctx, k8s, i, o) })
}

func createNumber(ctx context.Context, k8s client.Client, i int, o Options) error {
	rec := o.Record
	n := &twiliov1.TwilioPhoneNumber{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: fmt.Sprintf("n%d", i)},
		Spec: twiliov1.TwilioPhoneNumberSpec{
			AccountRef:  twiliov1.LocalObjectReference{Name: "main"},
			PhoneNumber: Number(i),
			Agent:       &twiliov1.AgentSpec{URL: o.AgentURL},
			Recording:   twiliov1.RecordingSpec{Enabled: &rec},
		},
	}
	if err := k8s.Create(ctx, n); err != nil {
		return fmt.Errorf("create number %d: %w", i, err)
	}
	n.Status.PhoneNumberSID = fmt.Sprintf("PN%032x", i+1)
	if err := k8s.Status().Update(ctx, n); err != nil {
		return fmt.Errorf("write number %d status: %w", i, err)
	}
	return nil
}

// parallel runs f(0..n-1) on conc workers and returns the first error.
func parallel(n, conc int, f func(int) error) error {
	var mu sync.Mutex
	var first error
	next := make(chan int)
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := f(i); err != nil {
					mu.Lock()
					first = errors.Join(first, err)
					mu.Unlock()
				}
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return first
}

// run starts the binary on free loopback ports and waits until /readyz
// answers 200 (routing synced).
func (s *Server) run(bin, kubeconfig, keyFile string) error {
	ports, err := freePorts(3)
	if err != nil {
		return err
	}
	s.Addr = "127.0.0.1:" + ports[0]
	s.MetricsURL = "http://127.0.0.1:" + ports[1] + "/metrics"
	probe := "http://127.0.0.1:" + ports[2] + "/readyz"
	logFile, err := os.Create(s.LogPath)
	if err != nil {
		return err
	}
	s.cmd = exec.Command(bin, // #nosec G204 -- the binary this package just built
		"--public-url="+PublicURL, "--allow-reserved-public-url",
		"--listen-address="+s.Addr, "--metrics-bind-address=127.0.0.1:"+ports[1], "--health-probe-bind-address=127.0.0.1:"+ports[2],
		"--namespaces="+namespace, "--credentials-secret="+namespace+"/"+credsName,
		"--stream-token-key-file="+keyFile, "--allow-loopback-agents", "--shutdown-grace-period=2s")
	s.cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	s.cmd.Stdout, s.cmd.Stderr = logFile, logFile
	if err := s.cmd.Start(); err != nil {
		_ = logFile.Close()
		return fmt.Errorf("start webhookserver: %w", err)
	}
	s.Pid = s.cmd.Process.Pid
	s.done = make(chan struct{})
	go func() { _ = s.cmd.Wait(); _ = logFile.Close(); close(s.done) }()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			return fmt.Errorf("webhookserver exited during start; see %s", s.LogPath)
		default:
		}
		resp, err := http.Get(probe) // #nosec G107 -- loopback probe of the server this package started
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("webhookserver not ready after 60 s; see %s", s.LogPath)
}

// freePorts returns n loopback ports free now.
func freePorts(n int) ([]string, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			_ = ln.Close()
		}
	}()
	ports := make([]string, 0, n)
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		ports = append(ports, strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
	}
	return ports, nil
}

// Stop ends the server (SIGTERM, then a kill after 20 s) and the control
// plane, and removes the temporary directory.
func (s *Server) Stop() {
	if s.cmd != nil && s.cmd.Process != nil && s.done != nil {
		_ = s.cmd.Process.Signal(os.Interrupt)
		select {
		case <-s.done:
		case <-time.After(20 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.done
		}
	}
	if s.env != nil {
		_ = s.env.Stop()
	}
	_ = os.RemoveAll(s.dir)
}

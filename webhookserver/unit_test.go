package webhookserver

import (
	"context"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

func TestStreamToken(t *testing.T) {
	g := NewWithT(t)
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { return now }
	ts := tokenSigner{keys: [][]byte{testKey}, ttl: 5 * time.Minute, now: clock}
	tok := ts.issue("CA1", "+14155550100", "AC1")
	g.Expect(ts.verify(tok, "CA1", "+14155550100", "AC1")).To(Succeed())

	g.Expect(ts.verify(tok, "CA2", "+14155550100", "AC1")).To(MatchError(errTokenMismatch))
	g.Expect(ts.verify(tok, "CA1", "+14155550101", "AC1")).To(MatchError(errTokenMismatch))
	g.Expect(ts.verify(tok, "CA1", "+14155550100", "AC2")).To(MatchError(errTokenMismatch))
	// Field boundaries are unambiguous.
	g.Expect(ts.verify(tok, "CA1+", "14155550100", "AC1")).To(MatchError(errTokenMismatch))
	other := tokenSigner{keys: [][]byte{[]byte(strings.Repeat("k", 32))}, ttl: 5 * time.Minute, now: clock}
	g.Expect(other.verify(tok, "CA1", "+14155550100", "AC1")).To(MatchError(errTokenMismatch))
	// A longer expiry cannot be written into the token.
	parts := strings.Split(tok, ".")
	g.Expect(ts.verify(parts[0]+".9999999999."+parts[2], "CA1", "+14155550100", "AC1")).To(MatchError(errTokenMismatch))

	for _, bad := range []string{"", "v1", "v1.x", "v2.1.abc", "v1.notanumber.abc"} {
		g.Expect(ts.verify(bad, "CA1", "+14155550100", "AC1")).To(MatchError(errTokenMalformed), bad)
	}
	now = now.Add(5*time.Minute + time.Second)
	g.Expect(ts.verify(tok, "CA1", "+14155550100", "AC1")).To(MatchError(errTokenExpired))
}

// TestStreamTokenKeyRotation walks the three-step rotation the README
// describes. At every step some replicas still run the previous step's keys,
// and each must accept the tokens the others issue; only after the last step
// does the old key stop working.
func TestStreamTokenKeyRotation(t *testing.T) {
	g := NewWithT(t)
	oldKey, newKey := []byte(strings.Repeat("o", 32)), []byte(strings.Repeat("n", 32))
	signer := func(keys ...[]byte) tokenSigner { return tokenSigner{keys: keys, ttl: time.Minute, now: time.Now} }
	steps := []tokenSigner{
		signer(oldKey),         // before
		signer(oldKey, newKey), // 1: accept the new key
		signer(newKey, oldKey), // 2: sign with it
		signer(newKey),         // 3: drop the old one
	}
	for i := 1; i < len(steps); i++ {
		prev, next := steps[i-1], steps[i]
		fromPrev := prev.issue("CA1", "+14155550100", "AC1")
		fromNext := next.issue("CA1", "+14155550100", "AC1")
		g.Expect(next.verify(fromPrev, "CA1", "+14155550100", "AC1")).To(Succeed(), "step %d accepts a token of step %d", i, i-1)
		g.Expect(prev.verify(fromNext, "CA1", "+14155550100", "AC1")).To(Succeed(), "step %d accepts a token of step %d", i-1, i)
	}
	// Done: tokens signed with the old key are refused.
	g.Expect(steps[3].verify(steps[0].issue("CA1", "+14155550100", "AC1"), "CA1", "+14155550100", "AC1")).To(MatchError(errTokenMismatch))
}

// TestWatchStreamTokenKeys: a running server picks up a rotation step from
// its key file, keeps its keys when the file holds something invalid, and
// stops accepting the old key only when the file drops it.
func TestWatchStreamTokenKeys(t *testing.T) {
	g := NewWithT(t)
	oldKey, newKey := strings.Repeat("o", 32), strings.Repeat("n", 32)
	file := filepath.Join(t.TempDir(), "key")
	// Replaced in one step, as the kubelet updates a mounted Secret: a reader
	// never sees a half-written file.
	write := func(v string) { writeAtomically(g, file, v) }
	write(oldKey + "\n")
	metrics, err := NewMetrics(prometheus.NewRegistry())
	g.Expect(err).NotTo(HaveOccurred())
	srv, err := New(Options{PublicURL: testPublicURL, Routes: NewStaticRoutes(nil, nil), TokenKeys: [][]byte{[]byte(oldKey)}, Metrics: metrics})
	g.Expect(err).NotTo(HaveOccurred())
	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	load := func(ctx context.Context) ([][]byte, error) {
		return LoadStreamTokenKeys(ctx, nil, types.NamespacedName{}, file)
	}
	go WatchStreamTokenKeys(ctx, 10*time.Millisecond, [][]byte{[]byte(oldKey)}, load, srv.SetTokenKeys, metrics, testLog())

	answeredBefore := srv.tokens.Load().issue("CA1", "+14155550100", "AC1")
	verify := func(tok string) error { return srv.tokens.Load().verify(tok, "CA1", "+14155550100", "AC1") }
	signingKey := func() string { return string(srv.tokens.Load().keys[0]) }

	write(newKey + "\n" + oldKey + "\n") // step 2: sign with the new key, still accept the old one
	g.Eventually(signingKey).Should(Equal(newKey))
	g.Expect(verify(answeredBefore)).To(Succeed(), "a call answered before the reload still streams")
	g.Expect(counterValue(metrics.StreamTokenKeyReloads.WithLabelValues("reloaded"))).To(Equal(1.0))

	write("not-a-key\n")
	g.Eventually(func() float64 { return counterValue(metrics.StreamTokenKeyReloads.WithLabelValues("invalid")) }).Should(Equal(1.0))
	g.Consistently(signingKey, 100*time.Millisecond).Should(Equal(newKey), "an invalid file leaves the keys in use")
	g.Expect(counterValue(metrics.StreamTokenKeyReloads.WithLabelValues("invalid"))).To(Equal(1.0), "counted once, not every interval")

	write(newKey + "\n") // step 3
	g.Eventually(func() error { return verify(answeredBefore) }).Should(MatchError(errTokenMismatch))
	g.Expect(counterValue(metrics.StreamTokenKeyReloads.WithLabelValues("reloaded"))).To(Equal(2.0))
}

func writeAtomically(g Gomega, path, v string) {
	tmp := path + ".tmp"
	g.Expect(os.WriteFile(tmp, []byte(v), 0o600)).To(Succeed())
	g.Expect(os.Rename(tmp, path)).To(Succeed())
}

func TestLoadStreamTokenKeys(t *testing.T) {
	g := NewWithT(t)
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		g.Expect(os.WriteFile(p, []byte(content), 0o600)).To(Succeed())
		return p
	}
	a, b := strings.Repeat("a", 32), strings.Repeat("b", 44)

	keys, err := LoadStreamTokenKeys(t.Context(), nil, types.NamespacedName{}, file("one", a+"\n"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(keys).To(Equal([][]byte{[]byte(a)}), "the trailing newline is not part of the key")
	keys, err = LoadStreamTokenKeys(t.Context(), nil, types.NamespacedName{}, file("two", b+"\r\n\n"+a+"\n"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(keys).To(Equal([][]byte{[]byte(b), []byte(a)}), "one key per line, in order, blank lines skipped")

	// A raw binary key (as `head -c 32 /dev/urandom` makes) is one key, even
	// with newline bytes inside it.
	binary := "\x00\x01\n\xff" + strings.Repeat("\x9c", 28) + "\n\x10"
	keys, err = LoadStreamTokenKeys(t.Context(), nil, types.NamespacedName{}, file("binary", binary+"\n"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(keys).To(Equal([][]byte{[]byte(binary)}))

	for name, tc := range map[string]struct{ content, want string }{
		"short":     {"tooshort\n", "on line 1 is 8 bytes, need at least 32"},
		"short 2nd": {a + "\nshort\n", "on line 2 is 5 bytes"},
		"empty":     {"\n\n", "stream token key is empty"},
		"too many":  {strings.Repeat(a+"\n", maxTokenKeys+1), "at most 3"},
	} {
		_, err = LoadStreamTokenKeys(t.Context(), nil, types.NamespacedName{}, file(name, tc.content))
		g.Expect(err).To(MatchError(ContainSubstring(tc.want)), name)
	}
	_, err = LoadStreamTokenKeys(t.Context(), nil, types.NamespacedName{}, filepath.Join(dir, "missing"))
	g.Expect(err).To(HaveOccurred())

	ns := newNamespace(t)
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "stream-token"}, Data: map[string][]byte{StreamTokenSecretKey: []byte(b + "\n" + a)}}
	g.Expect(k8s.Create(context.Background(), sec)).To(Succeed())
	keys, err = LoadStreamTokenKeys(t.Context(), k8s, types.NamespacedName{Namespace: ns, Name: "stream-token"}, "")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(keys).To(Equal([][]byte{[]byte(b), []byte(a)}))
	_, err = LoadStreamTokenKeys(t.Context(), k8s, types.NamespacedName{Namespace: ns, Name: "absent"}, "")
	g.Expect(err).To(MatchError(ContainSubstring("read stream token secret")))
}

func TestIsMediaFrame(t *testing.T) {
	g := NewWithT(t)
	cases := map[string]bool{
		`{"event":"media","media":{"payload":"AAA"}}`:                      true,
		`{ "event" : "media", "media": {}}`:                                true,
		`{"streamSid":"MZ1","event":"media","media":{}}`:                   true,
		`{"event":"mark","mark":{"name":"media"}}`:                         false,
		`{"event":"start","start":{"customParameters":{"event":"media"}}}`: false,
		`{"event":"stop"}`:                            false,
		`{"event":"clear"}`:                           false,
		`{"event":"dtmf","dtmf":{"digit":"1"}}`:       false,
		`not json`:                                    false,
		`{"start":{"event":"media"},"event":"start"}`: false,
	}
	for frame, want := range cases {
		g.Expect(isMediaFrame([]byte(frame))).To(Equal(want), frame)
	}
}

func TestParseFlags(t *testing.T) {
	base := []string{"--public-url=https://voice.acme-corp.io", "--stream-token-key-file=/etc/key", "--credentials-secret=ops/creds"}
	t.Run("defaults", func(t *testing.T) {
		g := NewWithT(t)
		c, err := parseFlags(io.Discard, base)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(c.PublicURL).To(Equal("https://voice.acme-corp.io"))
		g.Expect(c.ListenAddress).To(Equal(":8080"))
		g.Expect(c.ShutdownGracePeriod).To(Equal(30 * time.Second))
		g.Expect(c.StreamTokenTTL).To(Equal(5 * time.Minute))
		g.Expect(c.Namespaces).To(BeEmpty())
		g.Expect(c.CredentialsSecret).To(Equal(types.NamespacedName{Namespace: "ops", Name: "creds"}))
	})
	t.Run("all set", func(t *testing.T) {
		g := NewWithT(t)
		c, err := parseFlags(io.Discard, []string{
			"--public-url=http://localhost:8080/", "--allow-http-public-url", "--listen-address=127.0.0.1:9000",
			"--metrics-bind-address=0", "--health-probe-bind-address=:9001", "--namespaces=a, b", "--shutdown-grace-period=1m",
			"--stream-token-secret=ops/stream-key", "--agent-dial-timeout=2s", "--stream-token-ttl=1m", "--credentials-secret=ops/creds",
		})
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(c.PublicURL).To(Equal("http://localhost:8080"))
		g.Expect(c.Namespaces).To(Equal([]string{"a", "b"}))
		g.Expect(c.StreamTokenSecret).To(Equal(types.NamespacedName{Namespace: "ops", Name: "stream-key"}))
		g.Expect(c.AgentDialTimeout).To(Equal(2 * time.Second))
	})
	bad := []struct {
		args []string
		flag string
	}{
		{[]string{"--stream-token-key-file=/k"}, "--public-url"},
		{[]string{"--public-url=http://x", "--stream-token-key-file=/k"}, "--public-url"},
		{[]string{"--public-url=https://x/path", "--stream-token-key-file=/k"}, "--public-url"},
		{[]string{"--public-url=https://voice.example.com", "--stream-token-key-file=/k", "--credentials-secret=ops/creds"}, "--public-url \"https://voice.example.com\" is a reserved example host"},
		{[]string{"--public-url=https://x"}, "--stream-token-secret"},
		{append(base, "--stream-token-secret=a/b"), "--stream-token-key-file"},
		{[]string{"--public-url=https://x", "--stream-token-secret=noslash"}, "--stream-token-secret"},
		{append(base, "--listen-address=8080"), "--listen-address"},
		{append(base, "--metrics-bind-address=:8080"), "--metrics-bind-address"},
		{append(base, "--health-probe-bind-address=nope"), "--health-probe-bind-address"},
		{append(base, "--namespaces=Bad_NS"), "--namespaces"},
		{append(base, "--shutdown-grace-period=-1s"), "--shutdown-grace-period"},
		{append(base, "--agent-dial-timeout=0s"), "--agent-dial-timeout"},
		{append(base, "--stream-token-ttl=1s"), "--stream-token-ttl"},
		{[]string{"--public-url=https://x", "--stream-token-key-file=/k"}, "--credentials-secret"},
		{append(base, "--credentials-secret=noslash"), "--credentials-secret"},
	}
	for _, b := range bad {
		t.Run(strings.Join(b.args, " "), func(t *testing.T) {
			g := NewWithT(t)
			_, err := parseFlags(io.Discard, b.args)
			g.Expect(err).To(MatchError(ContainSubstring(b.flag)))
		})
	}
	t.Run("a reserved host for a test", func(t *testing.T) {
		g := NewWithT(t)
		c, err := parseFlags(io.Discard, []string{"--public-url=https://voice.example.test", "--allow-reserved-public-url", "--stream-token-key-file=/k", "--credentials-secret=ops/creds"})
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(c.PublicURL).To(Equal("https://voice.example.test"))
	})
	t.Run("unknown flag", func(t *testing.T) {
		g := NewWithT(t)
		_, err := parseFlags(io.Discard, append(base, "--nope"))
		g.Expect(err).To(MatchError(ContainSubstring("-nope")))
	})
	t.Run("help", func(t *testing.T) {
		g := NewWithT(t)
		_, err := parseFlags(io.Discard, []string{"-h"})
		g.Expect(errors.Is(err, flag.ErrHelp)).To(BeTrue())
	})
}

func TestRedactURLHidesSecretsOfAgentURLs(t *testing.T) {
	for raw, want := range map[string]string{
		"wss://agent.example.com/media":                      "wss://agent.example.com/media",
		"wss://agent.example.com/media?key=s3cr3t&lang=en":   "wss://agent.example.com/media?redacted",
		"wss://user:pass@agent.example.com/media?key=s3cr3t": "wss://user:xxxxx@agent.example.com/media?redacted",
	} {
		if got := redactURL(raw); got != want {
			t.Errorf("redactURL(%q) = %q, want %q", raw, got, want)
		}
	}
}

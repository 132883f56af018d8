package egress

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

var (
	ownAddr  = netip.MustParseAddr("10.1.2.3")
	ownPorts = []uint16{8080, 9090, 8081}
)

func mustPolicy(t *testing.T, o Options) *Policy {
	t.Helper()
	if o.OwnAddrs == nil {
		o.OwnAddrs = []netip.Addr{ownAddr}
	}
	if o.OwnPorts == nil {
		o.OwnPorts = ownPorts
	}
	p, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// expect checks err against want: "" is success, anything else the reason.
func expect(t *testing.T, what string, err error, want Reason) {
	t.Helper()
	got, refused := ReasonOf(err)
	switch {
	case want == "" && err != nil:
		t.Errorf("%s: refused, want allowed: %v", what, err)
	case want != "" && !refused:
		t.Errorf("%s: got %v, want refused (%s)", what, err, want)
	case want != "" && got != want:
		t.Errorf("%s: refused for %s, want %s: %v", what, got, want, err)
	case want != "" && !errors.Is(err, ErrRefused):
		t.Errorf("%s: errors.Is(err, ErrRefused) is false", what)
	}
}

func TestCheckURL(t *testing.T) {
	def := mustPolicy(t, Options{})
	loop := mustPolicy(t, Options{AllowLoopback: true})
	listed := mustPolicy(t, Options{Allowed: []string{"agents.example.com", "*.agents.svc.cluster.local", "10.8.0.0/16", "2001:db8::/32", "192.0.2.7"}})
	names := mustPolicy(t, Options{Allowed: []string{"agents.example.com", "*.voice.example.net"}})

	tests := []struct {
		name string
		p    *Policy
		url  string
		want Reason
	}{
		{"public name", def, "wss://agent.example.com/media", ""},
		{"public name, trailing dot", def, "ws://agent.example.com./media", ""},
		{"pod IP", def, "ws://10.4.5.6:8080/media", ""},
		{"loopback", def, "ws://127.0.0.1:8000/media", ReasonLoopback},
		{"loopback elsewhere in 127/8", def, "ws://127.9.9.9/", ReasonLoopback},
		{"IPv6 loopback", def, "ws://[::1]:8000/", ReasonLoopback},
		{"IPv4-mapped loopback", def, "ws://[::ffff:127.0.0.1]:8000/", ReasonLoopback},
		{"IPv4-mapped loopback, hex", def, "ws://[::ffff:7f00:1]:8000/", ReasonLoopback},
		{"localhost", def, "ws://localhost:8000/", ReasonLoopback},
		{"localhost, capitals and trailing dot", def, "ws://LocalHost.:8000/", ReasonLoopback},
		{"below localhost", def, "ws://agent.localhost/", ReasonLoopback},
		{"metadata", def, "ws://169.254.169.254/latest/meta-data/", ReasonLinkLocal},
		{"IPv4-mapped metadata", def, "ws://[::ffff:169.254.169.254]/", ReasonLinkLocal},
		{"IPv6 link-local", def, "ws://[fe80::1]:80/", ReasonLinkLocal},
		{"IPv6 link-local with zone", def, "ws://[fe80::1%25eth0]:80/", ReasonLinkLocal},
		{"unspecified", def, "ws://0.0.0.0:8000/", ReasonUnspecified},
		{"this network", def, "ws://0.1.2.3/", ReasonUnspecified},
		{"IPv6 unspecified", def, "ws://[::]:8000/", ReasonUnspecified},
		{"multicast", def, "ws://224.0.0.1/", ReasonMulticast},
		{"broadcast", def, "ws://255.255.255.255/", ReasonMulticast},
		{"IPv6 multicast", def, "ws://[ff02::1]/", ReasonMulticast},
		{"decimal", def, "ws://2130706433/", ReasonInvalid},
		{"hex", def, "ws://0x7f000001/", ReasonInvalid},
		{"hex dotted", def, "ws://0x7f.0.0.1/", ReasonInvalid},
		{"octal", def, "ws://0177.0.0.1/", ReasonInvalid},
		{"shortened", def, "ws://127.1/", ReasonInvalid},
		{"numeric, trailing dot", def, "ws://127.0.0.1./", ReasonInvalid},
		{"own metrics port", def, "ws://10.1.2.3:9090/metrics", ReasonOwnPort},
		{"own probe port", def, "ws://10.1.2.3:8081/healthz", ReasonOwnPort},
		{"own listen port", def, "ws://10.1.2.3:8080/", ReasonOwnPort},
		{"own address, default port 80", def, "ws://10.1.2.3/", ""},
		{"another pod's metrics port", def, "ws://10.1.2.4:9090/", ""},
		{"not ws", def, "http://agent.example.com/", ReasonInvalid},
		{"no host", def, "ws:///media", ReasonInvalid},
		{"port 0", def, "ws://agent.example.com:0/", ReasonInvalid},
		{"port too big", def, "ws://agent.example.com:65536/", ReasonInvalid},
		{"not a URL", def, "ws://%zz/", ReasonInvalid},

		{"opt-in: loopback", loop, "ws://127.0.0.1:8000/media", ""},
		{"opt-in: IPv6 loopback", loop, "ws://[::1]:8000/", ""},
		{"opt-in: localhost", loop, "ws://localhost:8000/", ""},
		{"opt-in: own port on loopback", loop, "ws://127.0.0.1:9090/metrics", ReasonOwnPort},
		{"opt-in: own port on IPv4-mapped loopback", loop, "ws://[::ffff:127.0.0.1]:8081/", ReasonOwnPort},
		{"opt-in: own port on own address", loop, "ws://10.1.2.3:8080/", ReasonOwnPort},
		{"opt-in: metadata", loop, "ws://169.254.169.254/", ReasonLinkLocal},
		{"opt-in: unspecified", loop, "ws://0.0.0.0:8000/", ReasonUnspecified},

		{"listed name", listed, "ws://agents.example.com/", ""},
		{"listed name, capitals and trailing dot", listed, "ws://AGENTS.Example.com./", ""},
		{"below a listed domain", listed, "ws://support.agents.svc.cluster.local:8080/media", ""},
		{"listed CIDR", listed, "ws://10.8.1.1:8080/", ""},
		{"outside the CIDRs", listed, "ws://10.9.0.1:8080/", ReasonNotAllowed},
		{"listed IP", listed, "ws://192.0.2.7/", ""},
		{"next to the listed IP", listed, "ws://192.0.2.8/", ReasonNotAllowed},
		{"listed IPv6 CIDR", listed, "ws://[2001:db8::5]/", ""},
		{"IPv4-mapped, outside the CIDRs", listed, "ws://[::ffff:10.9.0.1]/", ReasonNotAllowed},
		{"unknown name, CIDRs decide at dial time", listed, "ws://other.example.com/", ""},
		{"listed: loopback", listed, "ws://127.0.0.1/", ReasonLoopback},
		{"listed: metadata", listed, "ws://169.254.169.254/", ReasonLinkLocal},

		{"names only: listed", names, "wss://agents.example.com/", ""},
		{"names only: below the wildcard", names, "wss://a.b.voice.example.net/", ""},
		{"names only: the wildcard's domain itself", names, "wss://voice.example.net/", ReasonNotAllowed},
		{"names only: suffix without a dot", names, "wss://evilvoice.example.net/", ReasonNotAllowed},
		{"names only: other name", names, "wss://evil.example.com/", ReasonNotAllowed},
		{"names only: prefix trick", names, "wss://agents.example.com.evil.test/", ReasonNotAllowed},
		{"names only: IP", names, "ws://10.8.1.1/", ReasonNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			expect(t, tt.url, tt.p.CheckURL(tt.url), tt.want)
		})
	}
}

func TestRefusalSaysWhyAndHow(t *testing.T) {
	def := mustPolicy(t, Options{})
	err := def.CheckURL("ws://127.0.0.1:8000/media")
	for _, want := range []string{"127.0.0.1:8000", "loopback", "--allow-loopback-agents"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("loopback refusal %q does not mention %q", err, want)
		}
	}
	listed := mustPolicy(t, Options{Allowed: []string{"10.8.0.0/16"}, AllowListFlag: "--custom-flag"})
	err = listed.CheckURL("ws://10.9.0.1/")
	for _, want := range []string{"10.9.0.1", "allow-list", "--custom-flag"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("allow-list refusal %q does not mention %q", err, want)
		}
	}
	err = def.CheckURL("ws://169.254.169.254/")
	for _, want := range []string{"169.254.169.254", "link-local", "always refused"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("metadata refusal %q does not mention %q", err, want)
		}
	}
}

func TestParseAllowList(t *testing.T) {
	tests := []struct {
		entry string
		want  string // "" accepted, else part of the error
	}{
		{"agents.example.com", ""},
		{"Agents.Example.com.", ""},
		{"*.agents.svc.cluster.local", ""},
		{"10.8.0.0/16", ""},
		{"10.8.0.7", ""},
		{"2001:db8::/32", ""},
		{"2001:db8::7", ""},
		{"::ffff:10.0.0.1", "IPv4 form (10.0.0.1)"},
		{"0.0.0.0/0", ""}, // broad: the always-refused ranges stay refused
		{"::/0", ""},
		{"127.0.0.1", "--allow-loopback-agents"},
		{"127.0.0.0/8", "--allow-loopback-agents"},
		{"::1", "--allow-loopback-agents"},
		{"::ffff:127.0.0.1", "IPv4 form"},
		{"localhost", "--allow-loopback-agents"},
		{"*.localhost", "--allow-loopback-agents"},
		{"169.254.169.254", "always refused"},
		{"169.254.0.0/16", "always refused"},
		{"fe80::/64", "always refused"},
		{"0.0.0.0", "always refused"},
		{"224.0.0.0/8", "always refused"},
		{"10.0.0.1/8", "host bits set; the network is 10.0.0.0/8"},
		{"::ffff:10.0.0.0/104", "IPv4 form"},
		{"10.0.0.0/33", "not a CIDR"},
		{"https://agents.example.com", "without scheme"},
		{"agents.example.com:443", "without scheme, port"},
		{"agents.example.com/media", "not a CIDR"},
		{"2130706433", "non-standard form"},
		{"0x7f.1", "non-standard form"},
		{"bad_host", "not a host name"},
		{"-bad.example.com", "not a host name"},
		{"*.", "not a host name"},
		{"a..b", "not a host name"},
		{"", "empty"},
	}
	for _, tt := range tests {
		t.Run(tt.entry, func(t *testing.T) {
			err := ParseAllowList([]string{tt.entry})
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tt.want != "" && err == nil:
				t.Errorf("accepted, want an error mentioning %q", tt.want)
			case tt.want != "" && !strings.Contains(err.Error(), tt.want):
				t.Errorf("error %q does not mention %q", err, tt.want)
			case tt.want != "" && !strings.Contains(err.Error(), strconv.Quote(tt.entry)):
				t.Errorf("error %q does not name the entry", err)
			}
		})
	}
	err := ParseAllowList([]string{"ok.example.com", "127.0.0.1", "10.0.0.1/8"})
	if err == nil || !strings.Contains(err.Error(), `"127.0.0.1"`) || !strings.Contains(err.Error(), `"10.0.0.1/8"`) {
		t.Errorf("every bad entry is reported, got %v", err)
	}
}

func TestSplitList(t *testing.T) {
	got := SplitList(" a.example.com, 10.0.0.0/8,,  ")
	if strings.Join(got, "|") != "a.example.com|10.0.0.0/8" {
		t.Errorf("SplitList = %q", got)
	}
	if SplitList("") != nil {
		t.Errorf("SplitList(\"\") = %q, want nil", SplitList(""))
	}
}

func TestControl(t *testing.T) {
	def := mustPolicy(t, Options{})
	listed := mustPolicy(t, Options{Allowed: []string{"agents.example.com", "10.8.0.0/16"}})
	tests := []struct {
		name    string
		p       *Policy
		host    string // "" uses Control
		address string
		want    Reason
	}{
		{"pod", def, "", "10.4.5.6:8080", ""},
		{"loopback", def, "", "127.0.0.1:8000", ReasonLoopback},
		{"IPv4-mapped loopback", def, "", "[::ffff:127.0.0.1]:8000", ReasonLoopback},
		{"IPv6 loopback", def, "", "[::1]:8000", ReasonLoopback},
		{"metadata", def, "", "169.254.169.254:80", ReasonLinkLocal},
		{"link-local with zone", def, "", "[fe80::1%eth0]:80", ReasonLinkLocal},
		{"own port", def, "", "10.1.2.3:9090", ReasonOwnPort},
		{"not IP:port", def, "", "agent.example.com:80", ReasonInvalid},
		{"listed CIDR", listed, "", "10.8.3.4:80", ""},
		{"not listed", listed, "", "10.9.3.4:80", ReasonNotAllowed},
		{"listed name, any address", listed, "agents.example.com", "10.9.3.4:80", ""},
		{"listed name, capitals", listed, "AGENTS.example.com.", "10.9.3.4:80", ""},
		{"listed name resolving to loopback", listed, "agents.example.com", "127.0.0.1:80", ReasonLoopback},
		{"listed name resolving to metadata", listed, "agents.example.com", "169.254.169.254:80", ReasonLinkLocal},
		{"listed name resolving to own port", listed, "agents.example.com", "10.1.2.3:8081", ReasonOwnPort},
		{"other name", listed, "other.example.com", "10.9.3.4:80", ReasonNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			if tt.host == "" {
				err = tt.p.Control("tcp4", tt.address, nil)
			} else {
				err = tt.p.ControlFor(tt.host)("tcp4", tt.address, nil)
			}
			expect(t, tt.address, err, tt.want)
		})
	}
}

// listener accepts and counts connections on 127.0.0.1.
type listener struct {
	port     string
	accepted atomic.Int32
}

func newListener(t *testing.T) *listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	l := &listener{}
	_, l.port, _ = net.SplitHostPort(ln.Addr().String())
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			l.accepted.Add(1)
			_ = c.Close()
		}
	}()
	return l
}

// fakeDNS answers every A query with 127.0.0.1 and every other query with
// no records: a tenant's DNS name that points at the webhook server's pod.
func fakeDNS(t *testing.T) *net.Resolver {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if resp := dnsAnswer(buf[:n]); resp != nil {
				_, _ = pc.WriteTo(resp, from)
			}
		}
	}()
	addr := pc.LocalAddr().String()
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", addr)
	}}
}

// dnsAnswer builds the response to one query (RFC 1035 wire format).
func dnsAnswer(q []byte) []byte {
	if len(q) < 12 {
		return nil
	}
	i := 12
	for i < len(q) && q[i] != 0 {
		i += int(q[i]) + 1
	}
	if i+5 > len(q) {
		return nil
	}
	qEnd := i + 5 // the zero label, QTYPE, QCLASS
	qtype := binary.BigEndian.Uint16(q[i+1:])
	resp := append([]byte{}, q[:2]...)          // ID
	resp = append(resp, 0x81, 0x80)             // response, recursion desired and available, NOERROR
	resp = append(resp, 0, 1, 0, 0, 0, 0, 0, 0) // QDCOUNT 1, the rest set below
	resp = append(resp, q[12:qEnd]...)          // the question
	if qtype == 1 {                             // A
		resp[7] = 1 // ANCOUNT 1
		resp = append(resp, 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, 1)
	}
	return resp
}

// TestDialTimeChecks: names are resolved before the check, so a name that
// resolves to a refused address is refused before any packet reaches it.
func TestDialTimeChecks(t *testing.T) {
	l := newListener(t)
	resolver := fakeDNS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	base := &net.Dialer{Resolver: resolver, Timeout: 5 * time.Second}
	port, _ := strconv.ParseUint(l.port, 10, 16)

	tests := []struct {
		name    string
		o       Options
		address string
		want    Reason
	}{
		{"localhost", Options{}, "localhost:" + l.port, ReasonLoopback},
		{"a tenant's name resolving to 127.0.0.1", Options{}, "agent.tenant-a.example:" + l.port, ReasonLoopback},
		{"the same name on the allow-list", Options{Allowed: []string{"agent.tenant-a.example"}}, "agent.tenant-a.example:" + l.port, ReasonLoopback},
		{"IPv4-mapped loopback literal", Options{}, "[::ffff:127.0.0.1]:" + l.port, ReasonLoopback},
		{"opt-in, but the server's own port", Options{AllowLoopback: true, OwnPorts: []uint16{uint16(port)}}, "agent.tenant-a.example:" + l.port, ReasonOwnPort},
		{"opt-in", Options{AllowLoopback: true}, "agent.tenant-a.example:" + l.port, ""},
		{"opt-in, with an allow-list that does not list it", Options{AllowLoopback: true, Allowed: []string{"10.0.0.0/8"}}, "agent.tenant-a.example:" + l.port, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.o.OwnPorts == nil {
				tt.o.OwnPorts = []uint16{}
			}
			p := mustPolicy(t, tt.o)
			before := l.accepted.Load()
			conn, err := p.DialContext(base)(ctx, "tcp", tt.address)
			if conn != nil {
				_ = conn.Close()
			}
			expect(t, tt.address, err, tt.want)
			if tt.want != "" && strings.HasPrefix(tt.address, "agent.") && !strings.Contains(err.Error(), "agent.tenant-a.example (127.0.0.1:") {
				t.Errorf("the refusal names neither the host nor the address it resolved to: %v", err)
			}
			if tt.want == "" {
				return
			}
			time.Sleep(50 * time.Millisecond) // an accepted connection would have been counted by now
			if n := l.accepted.Load() - before; n != 0 {
				t.Errorf("%d connections reached the refused destination", n)
			}
		})
	}

	// net.Dialer.Control on its own (the brief form: no host name known).
	d := &net.Dialer{Resolver: resolver, Control: mustPolicy(t, Options{}).Control}
	_, err := d.DialContext(ctx, "tcp", "agent.tenant-a.example:"+l.port)
	expect(t, "Control", err, ReasonLoopback)
}

func TestCheckResolved(t *testing.T) {
	resolver := fakeDNS(t)
	ctx := context.Background()
	expect(t, "resolving to loopback", mustPolicy(t, Options{}).CheckResolved(ctx, resolver, "agent.tenant-a.example", 80), ReasonLoopback)
	expect(t, "opt-in", mustPolicy(t, Options{AllowLoopback: true}).CheckResolved(ctx, resolver, "agent.tenant-a.example", 80), "")
	expect(t, "literal", mustPolicy(t, Options{}).CheckResolved(ctx, resolver, "169.254.169.254", 80), ReasonLinkLocal)
	expect(t, "public literal", mustPolicy(t, Options{}).CheckResolved(ctx, resolver, "192.0.2.1", 80), "")
}

func TestInterfaceAddressesAreOwn(t *testing.T) {
	addrs, err := interfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(Options{OwnPorts: []uint16{9090}})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if a.IsLoopback() || a.IsLinkLocalUnicast() {
			continue
		}
		expect(t, a.String(), p.Control("tcp", netip.AddrPortFrom(a, 9090).String(), nil), ReasonOwnPort)
		expect(t, a.String(), p.Control("tcp", netip.AddrPortFrom(a, 9091).String(), nil), "")
	}
}

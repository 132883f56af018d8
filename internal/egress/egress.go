// Package egress decides which network destinations the webhook server may
// connect to on behalf of a tenant: a TwilioPhoneNumber's spec.agent.url is
// written by whoever can edit the object, so the bridge must not become a
// relay into the pod itself, the node's metadata service or anything else
// the tenant could not reach on its own.
//
// A Policy refuses by default loopback, link-local (169.254.0.0/16, which
// holds cloud metadata services at 169.254.169.254, and fe80::/10),
// unspecified, multicast and broadcast addresses, and the server's own ports
// on any of its own addresses. An optional allow-list of host names and
// CIDRs narrows what remains. The decisive check is Control (or DialContext),
// run by net.Dialer on the resolved IP:port of every connection attempt, so
// a name that resolves to a refused address is refused too; CheckURL is the
// syntactic part, for validating a spec before anything is dialled.
package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
)

// Default flag names quoted in errors, so a refusal says how to allow it.
const (
	DefaultAllowListFlag = "--agent-allowed-destinations"
	DefaultLoopbackFlag  = "--allow-loopback-agents"
)

// Reason says why a destination was refused. The values are fixed, short
// and safe as metric labels.
type Reason string

// Reasons a destination is refused.
const (
	// ReasonLoopback: 127.0.0.0/8, ::1, or the name localhost.
	ReasonLoopback Reason = "loopback"
	// ReasonLinkLocal: 169.254.0.0/16 (cloud metadata), fe80::/10, and
	// link-local multicast.
	ReasonLinkLocal Reason = "link_local"
	// ReasonUnspecified: 0.0.0.0/8 and ::, which connect to the host itself.
	ReasonUnspecified Reason = "unspecified"
	// ReasonMulticast: multicast and the IPv4 broadcast address.
	ReasonMulticast Reason = "multicast"
	// ReasonOwnPort: one of the server's own ports on one of its own addresses.
	ReasonOwnPort Reason = "own_port"
	// ReasonNotAllowed: an allow-list is set and the destination is not on it.
	ReasonNotAllowed Reason = "not_allowed"
	// ReasonInvalid: the destination cannot be judged (not a ws:// or wss://
	// URL, no host, an IP address in a non-standard numeric form).
	ReasonInvalid Reason = "invalid"
)

// ErrRefused matches every *RefusedError with errors.Is.
var ErrRefused = errors.New("destination refused by the egress policy")

// RefusedError is a destination the policy refused: what, why, and how it
// could be allowed (when it can be).
type RefusedError struct {
	// Destination is what was refused: a host, host:port or IP:port.
	Destination string
	// Reason is the class of the refusal.
	Reason Reason
	// Detail explains the refusal in words.
	Detail string
	// Hint names the setting that would allow it; empty when nothing can.
	Hint string
}

// Error says what was refused, why, and how it could be allowed.
func (e *RefusedError) Error() string {
	msg := fmt.Sprintf("destination %s refused: %s", e.Destination, e.Detail)
	if e.Hint != "" {
		msg += " (" + e.Hint + ")"
	}
	return msg
}

// Is makes errors.Is(err, ErrRefused) true.
func (e *RefusedError) Is(target error) bool { return target == ErrRefused }

// ReasonOf returns the reason err (or an error it wraps) was refused for,
// and whether it is a refusal at all.
func ReasonOf(err error) (Reason, bool) {
	var r *RefusedError
	if errors.As(err, &r) {
		return r.Reason, true
	}
	return "", false
}

// Options configures a Policy. The zero value is the default policy: no
// allow-list, loopback refused, no own ports known.
type Options struct {
	// Allowed is the allow-list; empty allows every destination that is not
	// refused anyway. Entries: an IP address, a CIDR (network address, e.g.
	// 10.8.0.0/16), a host name (agent.example.com), or "*." and a domain
	// (*.agents.svc.cluster.local: any name below it). A host-name entry
	// allows the name whatever it resolves to, except the ranges that are
	// always refused.
	Allowed []string
	// AllowLoopback lets agents on loopback addresses (127.0.0.0/8, ::1,
	// localhost) through, as if they were on the allow-list: for local demos
	// and tests, where agents run on 127.0.0.1. The server's own ports stay
	// refused.
	AllowLoopback bool
	// OwnPorts are the server's own listening ports (webhooks, metrics,
	// probes); they are refused on every address in OwnAddrs and on loopback.
	OwnPorts []uint16
	// OwnAddrs are the server's own addresses. Nil reads the addresses of
	// the host's (the pod's) network interfaces once, in New.
	OwnAddrs []netip.Addr
	// AllowListFlag and LoopbackFlag are the settings named in errors; empty
	// uses DefaultAllowListFlag and DefaultLoopbackFlag.
	AllowListFlag, LoopbackFlag string
}

// Policy decides whether a destination may be dialled. It is immutable and
// safe for concurrent use.
type Policy struct {
	hosts         map[string]bool // exact names, lower case, no trailing dot
	suffixes      []string        // ".example.com" for "*.example.com"
	prefixes      []netip.Prefix
	listed        bool // an allow-list is set
	allowLoopback bool
	ownPorts      map[uint16]bool
	ownAddrs      map[netip.Addr]bool
	allowFlag     string
	loopbackFlag  string
}

// SplitList splits a comma-separated flag value into trimmed, non-empty entries.
func SplitList(s string) []string {
	var out []string
	for _, e := range strings.Split(s, ",") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return out
}

// ParseAllowList validates allow-list entries (see Options.Allowed); the
// error names every bad entry and why.
func ParseAllowList(entries []string) error {
	_, err := New(Options{Allowed: entries, OwnAddrs: []netip.Addr{}})
	return err
}

// New builds a Policy. It fails on an allow-list entry that is malformed or
// that could never take effect (inside a range that is always refused), and
// when the interface addresses cannot be read.
func New(o Options) (*Policy, error) {
	p := &Policy{
		hosts:         map[string]bool{},
		allowLoopback: o.AllowLoopback,
		ownPorts:      map[uint16]bool{},
		ownAddrs:      map[netip.Addr]bool{},
		allowFlag:     o.AllowListFlag,
		loopbackFlag:  o.LoopbackFlag,
	}
	if p.allowFlag == "" {
		p.allowFlag = DefaultAllowListFlag
	}
	if p.loopbackFlag == "" {
		p.loopbackFlag = DefaultLoopbackFlag
	}
	var errs []error
	for _, e := range o.Allowed {
		if err := p.addEntry(e); err != nil {
			errs = append(errs, fmt.Errorf("entry %q: %w", e, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	p.listed = len(p.hosts) > 0 || len(p.suffixes) > 0 || len(p.prefixes) > 0
	for _, port := range o.OwnPorts {
		if port != 0 {
			p.ownPorts[port] = true
		}
	}
	own := o.OwnAddrs
	if own == nil {
		var err error
		if own, err = interfaceAddrs(); err != nil {
			return nil, fmt.Errorf("read own interface addresses: %w", err)
		}
	}
	for _, a := range own {
		p.ownAddrs[a.Unmap().WithZone("")] = true
	}
	return p, nil
}

func interfaceAddrs() ([]netip.Addr, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, a := range addrs {
		var ip net.IP
		switch v := a.(type) {
		case *net.IPNet:
			ip = v.IP
		case *net.IPAddr:
			ip = v.IP
		}
		if addr, ok := netip.AddrFromSlice(ip); ok {
			out = append(out, addr.Unmap())
		}
	}
	return out, nil
}

// alwaysRefused are the ranges no allow-list entry can open; loopback opens
// only with AllowLoopback.
var alwaysRefused = []struct {
	prefix netip.Prefix
	reason Reason
}{
	{netip.MustParsePrefix("127.0.0.0/8"), ReasonLoopback},
	{netip.MustParsePrefix("::1/128"), ReasonLoopback},
	{netip.MustParsePrefix("169.254.0.0/16"), ReasonLinkLocal},
	{netip.MustParsePrefix("fe80::/10"), ReasonLinkLocal},
	{netip.MustParsePrefix("0.0.0.0/8"), ReasonUnspecified},
	{netip.MustParsePrefix("::/128"), ReasonUnspecified},
	{netip.MustParsePrefix("224.0.0.0/4"), ReasonMulticast},
	{netip.MustParsePrefix("255.255.255.255/32"), ReasonMulticast},
	{netip.MustParsePrefix("ff00::/8"), ReasonMulticast},
}

func (p *Policy) addEntry(e string) error {
	e = strings.ToLower(strings.TrimSpace(e))
	switch {
	case e == "":
		return errors.New("empty")
	case strings.Contains(e, "://") || strings.ContainsAny(e, "?#@[] \t"):
		return errors.New("want a host name, an IP address or a CIDR, without scheme, port or path")
	}
	if strings.Contains(e, "/") {
		pfx, err := netip.ParsePrefix(e)
		if err != nil {
			return fmt.Errorf("not a CIDR: %w", err)
		}
		if pfx.Addr().Is4In6() {
			return fmt.Errorf("an IPv4-mapped IPv6 CIDR; write it in IPv4 form")
		}
		if pfx.Masked() != pfx {
			return fmt.Errorf("has host bits set; the network is %s", pfx.Masked())
		}
		return p.addPrefix(pfx)
	}
	if addr, err := netip.ParseAddr(e); err == nil {
		if addr.Zone() != "" {
			return errors.New("an IP address with a zone")
		}
		if addr.Is4In6() {
			return fmt.Errorf("an IPv4-mapped IPv6 address; write it in IPv4 form (%s)", addr.Unmap())
		}
		return p.addPrefix(netip.PrefixFrom(addr, addr.BitLen()))
	}
	if strings.Contains(e, ":") {
		return errors.New("want a host name, an IP address or a CIDR, without scheme, port or path")
	}
	name, wildcard := strings.CutPrefix(strings.TrimSuffix(e, "."), "*.")
	if err := checkHostName(name); err != nil {
		return err
	}
	if name == "localhost" || strings.HasSuffix(name, ".localhost") {
		return fmt.Errorf("names loopback, which no allow-list entry opens; use %s (local demos and tests only)", p.loopbackFlag)
	}
	if wildcard {
		p.suffixes = append(p.suffixes, "."+name)
	} else {
		p.hosts[name] = true
	}
	return nil
}

func (p *Policy) addPrefix(pfx netip.Prefix) error {
	for _, r := range alwaysRefused {
		if r.prefix.Bits() <= pfx.Bits() && r.prefix.Contains(pfx.Addr()) {
			if r.reason == ReasonLoopback {
				return fmt.Errorf("lies in %s (loopback), which no allow-list entry opens; use %s (local demos and tests only)", r.prefix, p.loopbackFlag)
			}
			return fmt.Errorf("lies in %s (%s), which is always refused", r.prefix, describe(r.reason))
		}
	}
	p.prefixes = append(p.prefixes, pfx)
	return nil
}

// checkHostName accepts DNS names made of letters, digits and hyphens whose
// last label is not numeric (that would be an IP address in disguise).
func checkHostName(name string) error {
	if name == "" || len(name) > 253 {
		return errors.New("not a host name")
	}
	labels := strings.Split(name, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return errors.New("not a host name (empty, over-long or hyphen-edged label)")
		}
		for _, c := range l {
			if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
				return fmt.Errorf("not a host name (character %q)", c)
			}
		}
	}
	if looksNumeric(name) {
		return errors.New("looks like an IP address in a non-standard form; write an IP address or CIDR in standard form")
	}
	return nil
}

// looksNumeric reports whether a host that is not a standard IP address
// would still be read as one by some resolver: inet_aton accepts 2130706433,
// 0x7f.1, 0177.0.0.1 and 127.1 as 127.0.0.1. A real DNS name never has an
// all-numeric (or 0x-hex) last label.
func looksNumeric(host string) bool {
	last := host[strings.LastIndexByte(host, '.')+1:]
	if last == "" {
		return false
	}
	if h, ok := strings.CutPrefix(last, "0x"); ok {
		_, err := strconv.ParseUint("0"+h, 16, 64)
		return err == nil
	}
	for _, c := range last {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func describe(r Reason) string {
	switch r {
	case ReasonLoopback:
		return "loopback"
	case ReasonLinkLocal:
		return "link-local, where cloud metadata services answer"
	case ReasonUnspecified:
		return "unspecified, which reaches the host itself"
	case ReasonMulticast:
		return "multicast or broadcast"
	}
	return string(r)
}

// normalizeHost lower-cases a host name and drops one trailing dot.
func normalizeHost(h string) string {
	return strings.TrimSuffix(strings.ToLower(h), ".")
}

// hostAllowed reports whether the host name is on the allow-list by name.
func (p *Policy) hostAllowed(host string) bool {
	h := normalizeHost(host)
	if h == "" {
		return false
	}
	if p.hosts[h] {
		return true
	}
	for _, s := range p.suffixes {
		if strings.HasSuffix(h, s) {
			return true
		}
	}
	return false
}

// checkAddr judges one IP address (and port; 0 when unknown) reached
// under dest. byName says the allow-list already admitted the host name.
func (p *Policy) checkAddr(dest string, ip netip.Addr, port uint16, byName bool) error {
	ip = ip.Unmap().WithZone("")
	refuse := func(r Reason, detail, hint string) error {
		return &RefusedError{Destination: dest, Reason: r, Detail: detail, Hint: hint}
	}
	loopback := false
	for _, r := range alwaysRefused {
		if !r.prefix.Contains(ip) {
			continue
		}
		if r.reason == ReasonLoopback {
			loopback = true
			if p.allowLoopback {
				break
			}
			return refuse(r.reason, fmt.Sprintf("%s is a loopback address, inside the webhook server's own pod", ip),
				"allow loopback agents with "+p.loopbackFlag+", for local demos and tests only")
		}
		return refuse(r.reason, fmt.Sprintf("%s is %s (%s)", ip, describe(r.reason), r.prefix), "always refused")
	}
	if port != 0 && p.ownPorts[port] && (loopback || p.ownAddrs[ip]) {
		return refuse(ReasonOwnPort, fmt.Sprintf("port %d on %s is one of the webhook server's own ports on its own address", port, ip), "always refused")
	}
	if !p.listed || byName || (loopback && p.allowLoopback) {
		return nil
	}
	for _, pfx := range p.prefixes {
		if pfx.Contains(ip) {
			return nil
		}
	}
	return refuse(ReasonNotAllowed, fmt.Sprintf("%s is not on the allow-list", ip), "add the host or a CIDR holding it to "+p.allowFlag)
}

// CheckURL checks an agent URL without resolving it: the scheme (ws or
// wss), a literal IP host, the name localhost, numeric hosts in
// non-standard forms, and, when the allow-list holds only names, the host
// name. A URL that passes may still be refused when it is dialled (a name
// resolving to a refused address, or one outside the allow-list's CIDRs);
// one that fails here would be refused at dial time too.
func (p *Policy) CheckURL(rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return &RefusedError{Destination: strconv.Quote(rawURL), Reason: ReasonInvalid, Detail: "not a URL"}
	}
	var port uint16 = 80
	switch u.Scheme {
	case "ws":
	case "wss":
		port = 443
	default:
		return &RefusedError{Destination: u.Redacted(), Reason: ReasonInvalid, Detail: "the scheme is not ws or wss"}
	}
	host := u.Hostname()
	if host == "" {
		return &RefusedError{Destination: u.Redacted(), Reason: ReasonInvalid, Detail: "no host"}
	}
	if ps := u.Port(); ps != "" {
		n, err := strconv.ParseUint(ps, 10, 16)
		if err != nil || n == 0 {
			return &RefusedError{Destination: u.Host, Reason: ReasonInvalid, Detail: "the port is not 1-65535"}
		}
		port = uint16(n)
	}
	return p.checkHost(u.Host, host, port)
}

// checkHost is CheckURL's judgement of one host (name or literal) and port.
func (p *Policy) checkHost(dest, host string, port uint16) error {
	if ip, err := netip.ParseAddr(host); err == nil {
		return p.checkAddr(dest, ip, port, false)
	}
	h := normalizeHost(host)
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		if p.allowLoopback {
			return nil // the port is judged on the resolved address
		}
		return &RefusedError{Destination: dest, Reason: ReasonLoopback, Detail: "localhost is a loopback name, inside the webhook server's own pod",
			Hint: "allow loopback agents with " + p.loopbackFlag + ", for local demos and tests only"}
	}
	if looksNumeric(h) {
		return &RefusedError{Destination: dest, Reason: ReasonInvalid,
			Detail: "the host looks like an IP address in a non-standard form (decimal, octal, hex or shortened)", Hint: "write the address in standard form"}
	}
	if p.listed && len(p.prefixes) == 0 && !p.hostAllowed(h) {
		return &RefusedError{Destination: dest, Reason: ReasonNotAllowed, Detail: fmt.Sprintf("the host %s is not on the allow-list", h),
			Hint: "add it to " + p.allowFlag}
	}
	return nil
}

// CheckResolved resolves host with r (nil: net.DefaultResolver) and checks
// every address it resolves to, with port. It is for connections that do
// not go to the host itself (through an HTTP proxy, which resolves the
// host on its own); a direct connection is checked by Control instead.
func (p *Policy) CheckResolved(ctx context.Context, r *net.Resolver, host string, port uint16) error {
	dest := net.JoinHostPort(host, strconv.Itoa(int(port)))
	if err := p.checkHost(dest, host, port); err != nil {
		return err
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return p.checkAddr(dest, ip, port, false)
	}
	if r == nil {
		r = net.DefaultResolver
	}
	ips, err := r.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return fmt.Errorf("resolve %s: %w", host, err)
	}
	byName := p.hostAllowed(host)
	for _, ip := range ips {
		if err := p.checkAddr(dest, ip, port, byName); err != nil {
			return err
		}
	}
	return nil
}

// Control checks the IP:port a connection is about to be made to (a
// net.Dialer Control function): it runs after name resolution, for every
// address tried, so a host name cannot smuggle a refused address past it.
// It knows no host name, so only the allow-list's IPs and CIDRs admit a
// destination; ControlFor also honours its names.
func (p *Policy) Control(_, address string, _ syscall.RawConn) error {
	return p.control("", false, address)
}

// ControlFor is Control for a connection to host (the name in the URL,
// before resolution): the allow-list's host names admit it too. The
// always-refused ranges and own ports are refused whatever the name.
func (p *Policy) ControlFor(host string) func(network, address string, c syscall.RawConn) error {
	byName := p.hostAllowed(host)
	if _, err := netip.ParseAddr(host); err == nil {
		host = "" // the address says it all
	}
	return func(_, address string, _ syscall.RawConn) error {
		return p.control(host, byName, address)
	}
}

// control judges the IP:port a connection is made to; host, when known, is
// the name it was resolved from (for the error), byName whether the
// allow-list admitted that name.
func (p *Policy) control(host string, byName bool, address string) error {
	dest := address
	if host != "" {
		dest = host + " (" + address + ")"
	}
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return &RefusedError{Destination: dest, Reason: ReasonInvalid, Detail: "not an IP:port"}
	}
	return p.checkAddr(dest, ap.Addr(), ap.Port(), byName)
}

// DialContext returns a dial function (for websocket.Dialer.NetDialContext
// or http.Transport.DialContext) that dials like base, with the policy
// checking every address the connection is attempted to. base's Control
// and ControlContext are replaced; base is not modified.
func (p *Policy) DialContext(base *net.Dialer) func(ctx context.Context, network, address string) (net.Conn, error) {
	if base == nil {
		base = &net.Dialer{}
	}
	return func(ctx context.Context, network, address string) (net.Conn, error) {
		host, _, err := net.SplitHostPort(address)
		if err != nil {
			return nil, &RefusedError{Destination: address, Reason: ReasonInvalid, Detail: "not host:port"}
		}
		d := *base
		d.ControlContext = nil
		d.Control = p.ControlFor(host)
		return d.DialContext(ctx, network, address)
	}
}

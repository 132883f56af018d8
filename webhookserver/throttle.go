package webhookserver

import (
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	utilcache "k8s.io/apimachinery/pkg/util/cache"
)

// failureThrottle slows down clients that keep failing authentication
// (signature, stream token). Each client has a token bucket of burst
// failures that refills at rate per second; a failure takes one token, and
// while a client's bucket is empty its requests are answered 429 before any
// signature is computed. Successful requests cost nothing, so a client that
// never fails (Twilio) is never throttled unless it shares its key with one
// that does (see clientKey).
//
// Memory is bounded: at most size clients are remembered (least recently
// failed first out), each until its bucket would be full again.
type failureThrottle struct {
	mu      sync.Mutex
	clients *utilcache.LRUExpireCache // client key → *bucket
	burst   float64
	rate    float64 // tokens per second
	now     func() time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

// newFailureThrottle returns a throttle, or nil (no throttling) when rate
// or burst is not positive.
func newFailureThrottle(burst int, rate float64, size int) *failureThrottle {
	if burst <= 0 || rate <= 0 || size <= 0 {
		return nil
	}
	return &failureThrottle{clients: utilcache.NewLRUExpireCache(size), burst: float64(burst), rate: rate, now: time.Now}
}

// refillTime is how long an empty bucket takes to be full again: after that
// the client's entry carries no information.
func (t *failureThrottle) refillTime() time.Duration {
	return time.Duration(t.burst / t.rate * float64(time.Second))
}

// level returns the bucket's tokens at now (caller holds mu).
func (t *failureThrottle) level(b *bucket, now time.Time) float64 {
	tokens := b.tokens + now.Sub(b.last).Seconds()*t.rate
	if tokens > t.burst {
		tokens = t.burst
	}
	return tokens
}

// allowed reports whether key may be checked now; when not, it also returns
// how long until it may.
func (t *failureThrottle) allowed(key string) (bool, time.Duration) {
	if t == nil {
		return true, 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	v, ok := t.clients.Get(key)
	if !ok {
		return true, 0
	}
	tokens := t.level(v.(*bucket), t.now())
	if tokens >= 1 {
		return true, 0
	}
	return false, time.Duration((1 - tokens) / t.rate * float64(time.Second))
}

// failed takes one token from key's bucket.
func (t *failureThrottle) failed(key string) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	tokens := t.burst
	if v, ok := t.clients.Get(key); ok {
		tokens = t.level(v.(*bucket), now)
	}
	tokens--
	if tokens < 0 {
		tokens = 0
	}
	t.clients.Add(key, &bucket{tokens: tokens, last: now}, t.refillTime())
}

// clientKey identifies the client a request came from, for throttling.
//
// The direct peer is the client unless it is a private, loopback or
// link-local address (an ingress, a proxy or a load balancer inside the
// cluster's network) and the request carries X-Forwarded-For: then the
// rightmost entry, the address that proxy saw, is the client. A client
// connecting directly from the internet cannot choose its key by sending
// X-Forwarded-For, and one behind the ingress gets its own key, not the
// ingress's. IPv6 clients are keyed by their /64, which one host usually
// holds entirely. Behind an L4 load balancer that rewrites source addresses
// and sets no X-Forwarded-For, every client shares the balancer's key
// (README: Security model).
func clientKey(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	peer, err := netip.ParseAddr(host)
	if err != nil {
		return truncate(host, 64)
	}
	peer = peer.Unmap()
	client := peer
	if peer.IsPrivate() || peer.IsLoopback() || peer.IsLinkLocalUnicast() {
		if xff := r.Header.Values("X-Forwarded-For"); len(xff) > 0 {
			last := xff[len(xff)-1]
			if i := strings.LastIndexByte(last, ','); i >= 0 {
				last = last[i+1:]
			}
			if a, err := netip.ParseAddr(strings.TrimSpace(last)); err == nil {
				client = a.Unmap()
			}
		}
	}
	if client.Is6() {
		if p, err := client.Prefix(64); err == nil {
			return p.String()
		}
	}
	return client.WithZone("").String()
}

// maxLoggedValue is how many bytes of a request value are logged.
const maxLoggedValue = 128

// logValue bounds a value taken from a request (form values, stream
// messages, errors quoting them) before it is logged: at most
// maxLoggedValue bytes, cut at a character boundary, with a marker saying
// how long the value was.
func logValue(v string) string { return truncate(v, maxLoggedValue) }

func truncate(v string, n int) string {
	if len(v) <= n {
		return v
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(v[cut]) {
		cut--
	}
	return v[:cut] + "…[truncated, " + strconv.Itoa(len(v)) + " bytes]"
}

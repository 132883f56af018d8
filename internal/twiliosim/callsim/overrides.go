package callsim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Overrides are Twilio's webhook connection overrides, which a webhook URL
// carries in its fragment ("#rc=3&rp=5xx,ct,rt&tt=15000"; twilio-facts.md
// §7). The zero fragment gives Twilio's defaults.
type Overrides struct {
	// ConnectTimeout (ct, 100–10000 ms, default 5000) and ReadTimeout (rt,
	// 100–15000 ms, default 15000) bound one attempt: the simulator gives
	// an attempt ct+rt in all (it cannot time the connection apart from the
	// answer through a caller's http.Client).
	ConnectTimeout, ReadTimeout time.Duration
	// TotalTimeout (tt, 100–15000 ms, default 15000) bounds every attempt
	// together.
	TotalTimeout time.Duration
	// RetryCount (rc, 0–5, default 1) is how many times a failed attempt is
	// retried, when RetryPolicy names the failure.
	RetryCount int
	// RetryPolicy (rp) lists the failures that are retried: 4xx and 5xx (the
	// answer's status), ct (the connection failed) and rt (the answer did
	// not come in time, or the connection broke), all (every one). Default
	// ct,rt: Twilio's default is unconfirmed (twilio-facts.md §7).
	RetryPolicy []string
}

// Failures an attempt can end with, as RetryPolicy names them.
const (
	failure4xx     = "4xx"
	failure5xx     = "5xx"
	failureConnect = "ct"
	failureRead    = "rt"
	failureAll     = "all"
)

// ParseOverrides reads the connection overrides of rawURL's fragment. Keys
// other than ct, rt, tt, rc, rp, e (edge) and sni, values out of Twilio's
// documented ranges and unknown retry policies are refused (Twilio refuses
// an invalid rp with error 11243; how it treats the rest is unconfirmed, and
// the simulator takes the strict reading). e and sni are accepted and
// ignored.
func ParseOverrides(rawURL string) (Overrides, error) {
	o := Overrides{ConnectTimeout: 5 * time.Second, ReadTimeout: 15 * time.Second, TotalTimeout: 15 * time.Second,
		RetryCount: 1, RetryPolicy: []string{failureConnect, failureRead}}
	u, err := url.Parse(rawURL)
	if err != nil {
		return o, err
	}
	frag := u.EscapedFragment()
	if frag == "" {
		return o, nil
	}
	millis := func(key, v string, lo, hi int) (time.Duration, error) {
		n, err := strconv.Atoi(v)
		if err != nil || n < lo || n > hi {
			return 0, fmt.Errorf("connection override %s=%q: must be %d–%d (ms)", key, v, lo, hi)
		}
		return time.Duration(n) * time.Millisecond, nil
	}
	for _, pair := range strings.Split(frag, "&") {
		key, v, _ := strings.Cut(pair, "=")
		switch key {
		case "ct":
			o.ConnectTimeout, err = millis(key, v, 100, 10000)
		case "rt":
			o.ReadTimeout, err = millis(key, v, 100, 15000)
		case "tt":
			o.TotalTimeout, err = millis(key, v, 100, 15000)
		case "rc":
			n, aerr := strconv.Atoi(v)
			if aerr != nil || n < 0 || n > 5 {
				err = fmt.Errorf("connection override rc=%q: must be 0–5", v)
			}
			o.RetryCount = n
		case "rp":
			o.RetryPolicy = strings.Split(v, ",")
			for _, p := range o.RetryPolicy {
				if !slices.Contains([]string{failure4xx, failure5xx, failureConnect, failureRead, failureAll}, p) {
					err = fmt.Errorf("connection override rp=%q: %q is not 4xx, 5xx, ct, rt or all (Twilio error 11243)", v, p)
				}
			}
		case "e", "sni":
		default:
			err = fmt.Errorf("connection override %q: unknown key (want ct, rt, tt, rc, rp, e or sni)", key)
		}
		if err != nil {
			return o, err
		}
	}
	return o, nil
}

// retries reports whether the policy retries failure.
func (o Overrides) retries(failure string) bool {
	return slices.Contains(o.RetryPolicy, failure) || slices.Contains(o.RetryPolicy, failureAll)
}

// sendWithOverrides sends a webhook request as signedRequest does, honouring
// the connection overrides of publicURL's fragment: a failed attempt (a
// non-2xx answer, a connection that failed or an answer that did not come)
// is retried, at once, up to RetryCount times when RetryPolicy names the
// failure, all within TotalTimeout. That Twilio retries at once, rather than
// after a pause, is unconfirmed. It returns the last answer, how many
// attempts were made, and an error (wrapping ErrWebhookFailed for a non-2xx
// answer) when the last one failed.
func sendWithOverrides(ctx context.Context, c Call, method, publicURL string, params url.Values, limit int64) (answer, int, error) {
	o, err := ParseOverrides(publicURL)
	if err != nil {
		return answer{}, 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, o.TotalTimeout)
	defer cancel()
	for attempt := 1; ; attempt++ {
		actx, acancel := context.WithTimeout(ctx, o.ConnectTimeout+o.ReadTimeout)
		a, err := signedRequest(actx, c, method, publicURL, params, limit)
		acancel()
		var failure string
		switch {
		case err != nil:
			failure = failureRead
			if isConnectFailure(err) {
				failure = failureConnect
			}
		case a.status >= 200 && a.status <= 299:
			return a, attempt, nil
		case a.status >= 500 && a.status <= 599:
			failure = failure5xx
			err = fmt.Errorf("answered %d: %w", a.status, ErrWebhookFailed)
		case a.status >= 400 && a.status <= 499:
			failure = failure4xx
			err = fmt.Errorf("answered %d: %w", a.status, ErrWebhookFailed)
		default:
			return a, attempt, fmt.Errorf("answered %d: %w", a.status, ErrWebhookFailed)
		}
		if attempt > o.RetryCount || !o.retries(failure) || ctx.Err() != nil {
			return a, attempt, err
		}
	}
}

// isConnectFailure reports whether err is a failure to connect (ct) rather
// than to get an answer (rt).
func isConnectFailure(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

package twiliosim

import (
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	twilio "github.com/twilio/twilio-go"
	"github.com/twilio/twilio-go/client"
)

const (
	testAccount = "AC0123456789abcdef0123456789abcdef"
	testToken   = "secretToken0123456789"
	testKey     = "SKfedcba9876543210fedcba9876543210"
	testSecret  = "keySecret42"
	otherAcct   = "ACffffffffffffffffffffffffffffffff"
	otherToken  = "otherToken1"
)

// rewriteTransport sends twilio-go's requests for https://api.twilio.com to
// the emulator (twilio-facts.md §2.3: the base URL is not configurable).
type rewriteTransport struct {
	target *url.URL
	next   http.RoundTripper
}

func (t rewriteTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r2 := r.Clone(r.Context())
	r2.URL.Scheme = t.target.Scheme
	r2.URL.Host = t.target.Host
	r2.Host = t.target.Host
	return t.next.RoundTrip(r2)
}

// startSim starts an emulator with the test account (token and API key) and
// a second, unrelated account.
func startSim(t *testing.T) (*Server, string) {
	t.Helper()
	s := New()
	s.AddAccount(Account{SID: testAccount, AuthToken: testToken, APIKeys: map[string]string{testKey: testSecret}})
	s.AddAccount(Account{SID: otherAcct, AuthToken: otherToken, FriendlyName: "Other"})
	base, err := s.Start("127.0.0.1:0")
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, base
}

// newTwilio returns a real twilio-go client whose requests reach baseURL.
func newTwilio(t *testing.T, baseURL, user, pass, accountSID string) *twilio.RestClient {
	t.Helper()
	target, err := url.Parse(baseURL)
	if err != nil {
		t.Fatalf("parse base URL: %v", err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	c := &client.Client{
		Credentials: client.NewCredentials(user, pass),
		HTTPClient:  &http.Client{Transport: rewriteTransport{target: target, next: tr}},
	}
	c.SetAccountSid(accountSID)
	return twilio.NewRestClientWithParams(twilio.ClientParams{Client: c})
}

// restError returns the *client.TwilioRestError in err, or nil.
func restError(err error) *client.TwilioRestError {
	var tre *client.TwilioRestError
	if errors.As(err, &tre) {
		return tre
	}
	return nil
}

// rawDo sends one plain HTTP request to the emulator and returns the answer.
func rawDo(t *testing.T, method, target, user, pass, form string) (int, http.Header, string) {
	t.Helper()
	var body io.Reader
	if form != "" {
		body = strings.NewReader(form)
	}
	req, err := http.NewRequest(method, target, body)
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	if form != "" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

func ptr[T any](v T) *T { return &v }

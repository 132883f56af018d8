package twiliosig

import (
	"net/url"
	"testing"

	. "github.com/onsi/gomega"
	"github.com/twilio/twilio-go/client"
)

const testToken = "secretToken0123456789"

func TestSignMatchesTwilioDocsExample(t *testing.T) {
	g := NewWithT(t)
	params := url.Values{
		"CallSid": {"CA1234567890ABCDE"},
		"Caller":  {"+12349013030"},
		"Digits":  {"1234"},
		"From":    {"+12349013030"},
		"To":      {"+18005551212"},
	}
	g.Expect(Sign("12345", "https://mycompany.com/myapp.php?foo=1&bar=2", params)).
		To(Equal("0/KCTR6DLpKmkAf8muzZqo1nDgQ="))
}

func TestSignPassesTwilioGoValidator(t *testing.T) {
	tests := []struct {
		name     string
		signed   string // URL the simulator signs
		checked  string // URL the server validates against
		params   url.Values
		token    string // token the server validates with
		wantPass bool
	}{
		{"form POST", "https://voice.example.com/voice", "https://voice.example.com/voice",
			url.Values{"CallSid": {"CA1"}, "From": {"+1 415"}, "Body": {"a&b=c"}}, testToken, true},
		{"keys sort byte-wise", "https://h/cb", "https://h/cb",
			url.Values{"Reason": {"x"}, "ReasonConferenceEnded": {"y"}}, testToken, true},
		{"websocket upgrade, no params", "wss://voice.example.com/stream", "wss://voice.example.com/stream",
			nil, testToken, true},
		{"validator adds the default port", "https://h/voice", "https://h:443/voice",
			url.Values{"A": {"1"}}, testToken, true},
		{"wrong token", "https://h/voice", "https://h/voice",
			url.Values{"A": {"1"}}, "otherToken1", false},
		{"wrong scheme", "wss://h/stream", "https://h/stream",
			nil, testToken, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			sig := Sign(testToken, tt.signed, tt.params)
			rv := client.NewRequestValidator(tt.token)
			g.Expect(rv.Validate(tt.checked, flatten(tt.params), sig)).To(Equal(tt.wantPass))
			g.Expect(rv.ValidateBody(tt.checked, []byte(tt.params.Encode()), sig)).To(Equal(tt.wantPass))
		})
	}
}

func flatten(v url.Values) map[string]string {
	m := make(map[string]string, len(v))
	for k := range v {
		m[k] = v.Get(k)
	}
	return m
}

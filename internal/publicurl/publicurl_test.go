package publicurl

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		raw       string
		allowHTTP bool
		want      string
		wantErr   string
	}{
		{raw: "https://voice.example.com", want: "https://voice.example.com"},
		{raw: "https://voice.example.com/", want: "https://voice.example.com"},
		{raw: "https://voice.example.com:8443", want: "https://voice.example.com:8443"},
		{raw: "http://127.0.0.1:8080", allowHTTP: true, want: "http://127.0.0.1:8080"},
		{raw: "", wantErr: "is required"},
		{raw: "http://voice.example.com", wantErr: "must use https"},
		{raw: "voice.example.com", wantErr: "must use https"},
		{raw: "https://", wantErr: "has no host"},
		{raw: "https://voice.example.com/twilio", wantErr: "no path"},
		{raw: "https://voice.example.com?x=1", wantErr: "no path, query"},
		{raw: "https://voice.example.com#ct=100", wantErr: "fragment"},
		{raw: "https://u:p@voice.example.com", wantErr: "credentials"},
	}
	for _, tt := range tests {
		got, err := Parse(tt.raw, tt.allowHTTP)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Parse(%q) error = %v, want one containing %q", tt.raw, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("Parse(%q) = %q, %v; want %q", tt.raw, got, err, tt.want)
		}
	}
}

func TestReservedHostsAreRefused(t *testing.T) {
	for _, u := range []string{"https://voice.example.com", "https://EXAMPLE.ORG", "https://a.b.example.net.", "https://voice.test", "https://x.invalid", "https://app.example"} {
		if err := CheckNotReserved(u); err == nil || !strings.Contains(err.Error(), "reserved example host") {
			t.Errorf("CheckNotReserved(%q) = %v, want a refusal", u, err)
		}
	}
	for _, u := range []string{"https://voice.your-company.com", "https://examples.com", "https://example.company.io", "http://127.0.0.1:8080", "https://testing.io"} {
		if err := CheckNotReserved(u); err != nil {
			t.Errorf("CheckNotReserved(%q) = %v, want nil", u, err)
		}
	}
}

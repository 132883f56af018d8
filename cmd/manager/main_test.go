package main

import (
	"strings"
	"testing"
	"time"
)

func TestParseFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"missing public URL", nil, "--public-url is required"},
		{"placeholder public URL", []string{"--public-url=https://voice.example.com"}, "--public-url \"https://voice.example.com\" is a reserved example host (example.com), a placeholder no one serves"},
		{"http public URL", []string{"--public-url=http://voice.acme-corp.io"}, "--public-url \"http://voice.acme-corp.io\" must use https"},
		{"public URL with path", []string{"--public-url=https://voice.acme-corp.io/twilio"}, "--public-url \"https://voice.acme-corp.io/twilio\" must be only scheme and host"},
		{"poll too short", []string{"--public-url=https://v.acme-corp.io", "--poll-interval=1s"}, "--poll-interval 1s is below the 10s minimum"},
		{"no workers", []string{"--public-url=https://v.acme-corp.io", "--max-concurrent-reconciles=0"}, "--max-concurrent-reconciles must be at least 1"},
		{"twilio budget out of range", []string{"--public-url=https://v.acme-corp.io", "--twilio-max-concurrent-requests=0"}, "--twilio-max-concurrent-requests must be between 1 and 100"},
		{"unknown flag", []string{"--public-url=https://v.acme-corp.io", "--bogus"}, "flag provided but not defined: -bogus"},
		{"API URL with a path", []string{"--public-url=https://v.acme-corp.io", "--allowed-api-urls=http://127.0.0.1:1/x"}, "--allowed-api-urls: \"http://127.0.0.1:1/x\" is not an origin"},
		{"bad sharing pattern", []string{"--public-url=https://v.acme-corp.io", "--account-sid-sharing-namespaces=team-["}, "--account-sid-sharing-namespaces: bad pattern"},
		{"credentials secret not namespace/name", []string{"--public-url=https://v.acme-corp.io", "--webhook-credentials-secret=creds"}, "--webhook-credentials-secret must be namespace/name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseFlags(tt.args)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}

	t.Setenv("POD_NAMESPACE", "voice-system")
	c, err := parseFlags([]string{"--public-url=https://voice.acme-corp.io/", "--poll-interval=2m", "--leader-elect",
		"--allowed-api-urls=http://127.0.0.1:4010, https://proxy.acme-corp.io", "--account-sid-sharing-namespaces=team-*"})
	if err != nil {
		t.Fatal(err)
	}
	if c.publicURL != "https://voice.acme-corp.io" || c.pollInterval != 2*time.Minute || !c.leaderElect || c.concurrentReconciles != 16 {
		t.Errorf("parsed %+v", c)
	}
	if len(c.allowedAPIURLs) != 2 || c.sharedSIDNamespaces[0] != "team-*" ||
		c.credentialsSecret.String() != "voice-system/twilio-voice-operator-webhook-credentials" ||
		c.guardKeySecret.String() != "voice-system/twilio-voice-operator-guard-key" {
		t.Errorf("parsed %+v", c)
	}
	if c, err := parseFlags([]string{"--public-url=http://127.0.0.1:8080", "--allow-http-public-url",
		"--webhook-credentials-secret=a/b", "--guard-key-secret=a/c"}); err != nil || c.publicURL != "http://127.0.0.1:8080" {
		t.Errorf("http with --allow-http-public-url: %q %v", c.publicURL, err)
	}
}

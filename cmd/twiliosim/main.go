// Command twiliosim serves the Twilio REST API emulator of
// internal/twiliosim on a local address until it is interrupted.
//
//	twiliosim --listen 127.0.0.1:8089 --account-sid AC… --auth-token secret \
//	  --numbers '+14155550100=https://old.example.com/voice,+14155550101='
//
// It prints the base URL, the credentials and one line per number.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/loquent/twilio-voice-operator/internal/twiliosim"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "twiliosim:", err)
		os.Exit(1)
	}
}

func run() error {
	listen := flag.String("listen", "127.0.0.1:8089", "address to listen on")
	accountSID := flag.String("account-sid", "", "account SID (generated when empty)")
	authToken := flag.String("auth-token", "", "auth token, [A-Za-z0-9] only (generated when empty)")
	numbers := flag.String("numbers", "", "comma-separated E164=VoiceUrl pairs; an empty URL leaves VoiceUrl unset")
	numbersFile := flag.String("numbers-file", "", "JSON array of numbers: phoneNumber, friendlyName, voiceUrl, voiceMethod, voiceApplicationSid, trunkSid, smsUrl")
	limit := flag.Int("concurrency-limit", 0, "in-flight requests per account before 429 (0 = unlimited)")
	latency := flag.Duration("latency", 0, "delay added to every request")
	flag.Parse()

	s := twiliosim.New()
	acct := s.AddAccount(twiliosim.Account{SID: *accountSID, AuthToken: *authToken})
	s.SetConcurrencyLimit(*limit)
	s.SetLatency(*latency)
	for _, pair := range strings.Split(*numbers, ",") {
		if pair = strings.TrimSpace(pair); pair == "" {
			continue
		}
		phone, voiceURL, _ := strings.Cut(pair, "=")
		n := s.AddNumber(twiliosim.Number{AccountSID: acct.SID, PhoneNumber: phone, VoiceURL: voiceURL})
		fmt.Printf("number %s %s voice_url=%q\n", n.SID, n.PhoneNumber, n.VoiceURL)
	}

	if *numbersFile != "" {
		if err := addNumbersFile(s, acct.SID, *numbersFile); err != nil {
			return err
		}
	}

	baseURL, err := s.Start(*listen)
	if err != nil {
		return fmt.Errorf("start: %w", err)
	}
	fmt.Printf("listening on %s account_sid=%s auth_token=%s\n", baseURL, acct.SID, acct.AuthToken)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	st := s.Stats()
	fmt.Printf("stopping after %d requests (%d answered 429, max %d in flight)\n", st.Total, st.TooMany, st.MaxInFlight)
	return s.Close()
}

// numberSpec is one entry of --numbers-file.
type numberSpec struct {
	PhoneNumber         string `json:"phoneNumber"`
	FriendlyName        string `json:"friendlyName"`
	VoiceURL            string `json:"voiceUrl"`
	VoiceMethod         string `json:"voiceMethod"`
	VoiceApplicationSID string `json:"voiceApplicationSid"`
	TrunkSID            string `json:"trunkSid"`
	SmsURL              string `json:"smsUrl"`
}

func addNumbersFile(s *twiliosim.Server, accountSID, path string) error {
	data, err := os.ReadFile(path) //nolint:gosec // a file the user named on the command line
	if err != nil {
		return fmt.Errorf("--numbers-file: %w", err)
	}
	var specs []numberSpec
	if err := json.Unmarshal(data, &specs); err != nil {
		return fmt.Errorf("--numbers-file %s: %w", path, err)
	}
	for _, sp := range specs {
		n := s.AddNumber(twiliosim.Number{AccountSID: accountSID, PhoneNumber: sp.PhoneNumber, FriendlyName: sp.FriendlyName,
			VoiceURL: sp.VoiceURL, VoiceMethod: sp.VoiceMethod, VoiceApplicationSID: sp.VoiceApplicationSID, TrunkSID: sp.TrunkSID, SmsURL: sp.SmsURL})
		fmt.Printf("number %s %s voice_url=%q application=%q trunk=%q\n", n.SID, n.PhoneNumber, n.VoiceURL, n.VoiceApplicationSID, n.TrunkSID)
	}
	return nil
}

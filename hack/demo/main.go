// Command demo shows the whole system working on one machine, with no cluster
// and no Twilio account: a local control plane, the Twilio emulator with three
// numbers, the operator, the webhook server, a sample agent and a CloudEvents
// sink (the account's spec.events.sink.url). It plans and applies the sample
// objects with kubectl, shows the preflight that proved the public path,
// places a simulated inbound call end to end, prints what happened and the
// recording's CloudEvent the sink received, sends an SMS and prints its
// CloudEvent, calls a number whose agent is gone (the fallback answers), then
// deletes the objects and shows the original routing back. With --stay it
// keeps everything up for kubectl until Ctrl-C.
//
//	make demo            # or: go run ./hack/demo [--stay]
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"

	"github.com/loquent/twilio-voice-operator/internal/controlplane"
	"github.com/loquent/twilio-voice-operator/internal/devenv"
	"github.com/loquent/twilio-voice-operator/internal/sampleagent"
	"github.com/loquent/twilio-voice-operator/internal/twiliosim/callsim"
	"github.com/loquent/twilio-voice-operator/webhookserver"
)

func main() {
	stay := flag.Bool("stay", false, "keep everything running after the call and print how to use kubectl; Ctrl-C stops and cleans up")
	bin := flag.String("bin", "bin", "directory for the built binaries")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *bin, *stay); err != nil {
		fmt.Fprintln(os.Stderr, "demo failed:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, bin string, stay bool) error {
	root, err := os.Getwd()
	if err != nil {
		return err
	}
	binDir, _ := filepath.Abs(bin)
	if err := devenv.Build(ctx, root, binDir, os.Stdout); err != nil {
		return err
	}
	// The account's event sink: the CloudEvents SDK's receiver in this
	// process, as a Knative broker or an Argo Events webhook source would be.
	sink, err := devenv.StartEventSink()
	if err != nil {
		return err
	}
	defer sink.Close()
	fmt.Printf("• A CloudEvents sink (the SDK's HTTP receiver) listens at %s\n", sink.URL)
	env, err := devenv.Start(ctx, devenv.Options{Root: root, BinDir: binDir, Log: os.Stdout, EventSinkURL: sink.URL})
	if err != nil {
		return err
	}
	defer func() {
		env.Stop()
		fmt.Println("• Stopped every process and removed the temporary directory")
	}()

	env.AddSampleNumbers()
	section("Twilio before (emulated account " + devenv.AccountSID + ")")
	printTwilio(env)

	samples := filepath.Join(env.Dir, "samples.yaml")
	if err := os.WriteFile(samples, []byte(env.SampleYAML()), 0o600); err != nil {
		return err
	}
	section("kubectl twilio plan -f samples.yaml  (what applying would change; it writes nothing)")
	if err := show(env.Kubectl(ctx, "twilio", "plan", "-f", samples)); err != nil {
		return err
	}
	section("kubectl apply -f samples.yaml")
	if err := show(env.Kubectl(ctx, "apply", "-f", samples)); err != nil {
		return err
	}
	if err := show(env.Kubectl(ctx, "wait", "--for=condition=Ready", "twilioaccount/acme", "--timeout=90s")); err != nil {
		fmt.Println(env.Tail("manager", 30))
		return err
	}
	if err := show(env.Kubectl(ctx, "wait", "--for=condition=Ready", "twiliophonenumbers", "--all", "--timeout=90s")); err != nil {
		fmt.Println(env.Tail("manager", 30))
		return err
	}
	section("The preflight: a signed test call proved the public path before any take-over")
	if err := show(env.Kubectl(ctx, "get", "events", "--field-selector", "reason=PreflightPassed",
		"-o", "custom-columns=OBJECT:.involvedObject.name,MESSAGE:.message")); err != nil {
		return err
	}
	section("kubectl get twiliophonenumbers  (the imported-numbers table)")
	if err := show(env.Kubectl(ctx, "get", "twiliophonenumbers", "-o", "wide")); err != nil {
		return err
	}
	section("kubectl twilio numbers acme  (every number in the Twilio account, managed or not)")
	if err := show(env.Kubectl(ctx, "twilio", "numbers", "acme")); err != nil {
		return err
	}
	section("Twilio after takeover")
	printTwilio(env)

	section("A caller dials +14155550100")
	call, err := placeCall(ctx, env)
	if err != nil {
		return err
	}

	section("The recording arrives at the account's sink as a CloudEvent")
	fmt.Printf("Twilio POSTed the recording status callback to the URL the answer named (the called number in\n" +
		"its query, retries asked for in its fragment); the webhook server delivered it to spec.events.sink.url:\n\n")
	rec, err := sink.Wait(ctx, 10*time.Second, func(e cloudevents.Event) bool {
		return e.Type() == webhookserver.EventTypeRecordingCompleted && e.Subject() == call.CallSID
	})
	if err != nil {
		fmt.Println(env.Tail("webhookserver", 20))
		return err
	}
	printEvent(rec)

	section("An SMS to +14155550100 arrives at the sink as a CloudEvent")
	if err := sendSMS(ctx, env, sink); err != nil {
		return err
	}

	section("The sales line's agent goes away: its caller gets the fallback")
	if err := fallbackCall(ctx, env); err != nil {
		return err
	}

	if err := buyNumber(ctx, env); err != nil {
		return err
	}

	if stay {
		fmt.Printf("\nEverything is still running. In another shell:\n\n")
		fmt.Printf("  export KUBECONFIG=%s\n", env.Kubeconfig)
		if k, err := controlplane.Kubectl(root); err == nil {
			fmt.Printf("  alias kubectl=%s\n", k)
		}
		fmt.Printf("  kubectl get twiliophonenumbers,twilioaccounts\n")
		fmt.Printf("  PATH=%s:$PATH kubectl twilio numbers acme\n", binDir)
		fmt.Printf("  kubectl patch twiliophonenumber support-line --type=merge -p '{\"spec\":{\"voiceRouting\":\"Disabled\"}}'\n")
		fmt.Printf("  kubectl events --for twiliophonenumber/support-line\n\n")
		fmt.Printf("Twilio emulator: %s (account %s, token %s)\nPress Ctrl-C to restore the numbers and stop.\n", env.EmulatorURL, devenv.AccountSID, devenv.AuthToken)
		<-ctx.Done()
		ctx = context.Background()
	}

	section("kubectl delete twiliophonenumbers --all  (Restore; the bought new-line: Release)")
	if err := show(env.Kubectl(ctx, "delete", "twiliophonenumbers", "--all", "--wait", "--timeout=60s")); err != nil {
		return err
	}
	section("Twilio after delete: the originals are back")
	printTwilio(env)
	if _, owned := env.Emulator.NumberByPhone(devenv.PurchaseNumber); !owned {
		fmt.Printf("%s (bought by the operator, deletionPolicy Release): released, no longer in the account\n", devenv.PurchaseNumber)
	}
	return nil
}

// buyNumber lists numbers on sale, applies a TwilioPhoneNumber that buys
// one (acquire: Purchase) and shows it bought with its routing set in the
// purchase.
func buyNumber(ctx context.Context, env *devenv.Env) error {
	section("kubectl twilio available --account acme --area-code 415  (numbers on sale; buys nothing)")
	if err := show(env.Kubectl(ctx, "twilio", "available", "--account", "acme", "--area-code", "415", "--limit", "3")); err != nil {
		return err
	}
	file := filepath.Join(env.Dir, "new-line.yaml")
	if err := os.WriteFile(file, []byte(env.PurchaseYAML()), 0o600); err != nil {
		return err
	}
	section("kubectl apply -f new-line.yaml  (acquire: Purchase; the account allows 1 purchase)")
	fmt.Print(env.PurchaseYAML())
	if err := show(env.Kubectl(ctx, "apply", "-f", file)); err != nil {
		return err
	}
	if err := show(env.Kubectl(ctx, "wait", "--for=condition=Ready", "twiliophonenumber/new-line", "--timeout=60s")); err != nil {
		fmt.Println(env.Tail("manager", 30))
		return err
	}
	if err := show(env.Kubectl(ctx, "get", "twiliophonenumber", "new-line", "-o",
		"custom-columns=NAME:.metadata.name,NUMBER:.spec.phoneNumber,REASON:.status.conditions[?(@.type=='Ready')].reason,PREVIOUS:.status.original,BOUGHT:.status.purchase.phoneNumberSid")); err != nil {
		return err
	}
	if err := show(env.Kubectl(ctx, "get", "events", "--field-selector", "reason=Purchased", "-o", "custom-columns=OBJECT:.involvedObject.name,MESSAGE:.message")); err != nil {
		return err
	}
	n, ok := env.Emulator.NumberByPhone(devenv.PurchaseNumber)
	if !ok {
		return fmt.Errorf("%s is not in the account after the purchase", devenv.PurchaseNumber)
	}
	fmt.Printf("In Twilio: %s %s, VoiceUrl %s (set in the purchase)\n", n.PhoneNumber, n.SID, n.VoiceURL)
	return nil
}

func placeCall(ctx context.Context, env *devenv.Env) (callsim.Result, error) {
	voiceURL, _, _, ok := env.Emulator.EffectiveVoiceURL("+14155550100")
	if !ok || voiceURL == "" {
		return callsim.Result{}, fmt.Errorf("+14155550100 has no effective voice URL")
	}
	res, err := callsim.Place(ctx, callsim.Call{
		VoiceURL: voiceURL, AuthToken: devenv.AuthToken, AccountSID: devenv.AccountSID,
		From: "+15005550006", To: "+14155550100", MediaFrames: 100, DTMF: []string{"4", "2"}, ToneHz: 440,
	})
	if err != nil {
		return res, fmt.Errorf("simulated call: %w", err)
	}
	fmt.Printf("Twilio POSTed the signed voice webhook to %s and got (HTTP %d):\n\n%s\n\n", voiceURL, res.VoiceStatus, indent(res.TwiML))
	if res.Recording != nil {
		fmt.Printf("  recording: channels=%s track=%s callback=%s\n", res.Recording.Channels, res.Recording.Track, res.Recording.RecordingStatusCallback)
	}
	fmt.Printf("  media stream: %s  parameters from=%s to=%s token=<%d chars>\n", res.StreamURL, res.Parameters["from"], res.Parameters["to"], len(res.Parameters["token"]))
	fmt.Printf("  caller → agent: %d media frames and %d DTMF digits sent\n", res.SentMedia, res.SentDTMF)
	fmt.Printf("  agent → caller: %d media frames received before the caller hung up; %d marks echoed\n", res.ReceivedMedia, res.MarksEchoed)
	fmt.Printf("  recording status callback %s: HTTP %d after %d attempt(s)\n", res.RecordingSID, res.RecordingCallbackStatus, res.RecordingCallbackAttempts)

	// The agent may still be reading the last relayed frames when the caller is done.
	var stats sampleagent.Stats
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if stats, err = agentStats(env); err != nil {
			return res, err
		}
		if stats.FramesIn >= int64(res.SentMedia) || time.Now().After(deadline) {
			break
		}
	}
	fmt.Printf("  the agent saw: call from %s to %s, %d frames in, %d out, digits %q\n",
		stats.LastFrom, stats.LastTo, stats.FramesIn, stats.FramesOut, stats.Digits)
	return res, nil
}

// sendSMS sends an inbound MMS to the support line the way Twilio does: to
// the SmsUrl the take-over set (spec.messaging: Enabled), signed,
// form-encoded, retried per the URL's connection overrides. It shows the
// message.received CloudEvent the sink got and the reply Twilio would send.
func sendSMS(ctx context.Context, env *devenv.Env, sink *devenv.EventSink) error {
	smsURL, _, _, _ := env.Emulator.EffectiveSmsURL("+14155550100")
	if smsURL == "" {
		return errors.New("the support line's SMS do not go anywhere: spec.messaging did not take them over")
	}
	res, err := callsim.SendSMS(ctx, callsim.SMS{
		URL: smsURL, AuthToken: devenv.AuthToken, AccountSID: devenv.AccountSID,
		From: "+15005550006", To: "+14155550100", Body: "Hi! Could you call me back about order 1042?",
		MediaURLs: []string{"https://api.twilio.com/2010-04-01/Accounts/" + devenv.AccountSID + "/Messages/MM0000000000000000000000000000d1/Media/ME0000000000000000000000000000d1"},
	})
	if err != nil {
		fmt.Println(env.Tail("webhookserver", 20))
		return fmt.Errorf("simulated SMS: %w", err)
	}
	fmt.Printf("spec.messaging: Enabled pointed the support line's SmsUrl (it was %s) at\n  %s\n", devenv.OriginalSMSURL, smsURL)
	fmt.Printf("  SMS webhook %s: HTTP %d after %d attempt(s), answered %s\n", res.MessageSID, res.Status, res.Attempts, strings.TrimSpace(res.Body))
	for _, r := range res.Replies {
		fmt.Printf("  Twilio sends the sender the sink's reply: %q\n", r.Body)
	}
	fmt.Println()
	msg, err := sink.Wait(ctx, 10*time.Second, func(e cloudevents.Event) bool {
		return e.Type() == webhookserver.EventTypeMessageReceived && e.Subject() == res.MessageSID
	})
	if err != nil {
		fmt.Println(env.Tail("webhookserver", 20))
		return err
	}
	printEvent(msg)
	return nil
}

// printEvent shows a CloudEvent's attributes and its data.
func printEvent(e cloudevents.Event) {
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	for _, a := range [][2]string{
		{"specversion", e.SpecVersion()}, {"type", e.Type()}, {"source", e.Source()}, {"subject", e.Subject()},
		{"id", e.ID()}, {"time", e.Time().Format(time.RFC3339Nano)}, {"datacontenttype", e.DataContentType()},
	} {
		fmt.Fprintf(w, "  %s\t%s\n", a[0], a[1])
	}
	_ = w.Flush()
	var data bytes.Buffer
	if err := json.Indent(&data, e.Data(), "    ", "  "); err != nil {
		data.Reset()
		data.Write(e.Data())
	}
	fmt.Printf("  data\n    %s\n", data.String())
}

// fallbackCall points the sales line's agent at a port nothing listens on
// and calls it: the webhook server cannot reach the agent, closes the stream,
// and Twilio goes on with the fallback after </Connect>.
func fallbackCall(ctx context.Context, env *devenv.Env) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	dead := "ws://" + ln.Addr().String() + "/media"
	_ = ln.Close()
	if err := show(env.Kubectl(ctx, "patch", "twiliophonenumber", "sales-line", "--type=merge",
		"-p", `{"spec":{"agent":{"url":"`+dead+`"}}}`)); err != nil {
		return err
	}
	const number = "+14155550101"
	voiceURL, _, _, _ := env.Emulator.EffectiveVoiceURL(number)
	// The webhook server sees the new agent URL within moments.
	var res callsim.Result
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		res, err = callsim.Place(ctx, callsim.Call{VoiceURL: voiceURL, AuthToken: devenv.AuthToken, AccountSID: devenv.AccountSID,
			From: "+15005550006", To: number, MediaFrames: 50})
		if err != nil {
			return fmt.Errorf("fallback call: %w", err)
		}
		if res.Say != "" || time.Now().After(deadline) {
			break
		}
	}
	fmt.Printf("The answer (HTTP %d) carries the fallback after </Connect>:\n\n%s\n\n", res.VoiceStatus, indent(res.TwiML))
	fmt.Printf("  media stream: closed by the webhook server (code %d) before the caller hung up\n", res.CloseCode)
	fmt.Printf("  the caller heard: %q, then hang-up=%v\n", res.Say, res.Hangup)
	if res.Say != devenv.SalesFallbackMessage {
		return fmt.Errorf("the caller did not reach the fallback (heard %q)", res.Say)
	}
	return nil
}

func agentStats(env *devenv.Env) (sampleagent.Stats, error) {
	var stats sampleagent.Stats
	resp, err := http.Get(env.AgentStatsURL) //nolint:gosec // the demo's own agent on loopback
	if err != nil {
		return stats, err
	}
	defer resp.Body.Close()
	return stats, json.NewDecoder(resp.Body).Decode(&stats)
}

func printTwilio(env *devenv.Env) {
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NUMBER\tVOICE URL\tMETHOD\tAPPLICATION\tCALLS GO TO\tSMS GO TO")
	for _, n := range devenv.SampleNumbers {
		tw, _ := env.Emulator.NumberByPhone(n.E164)
		eff, _, _, _ := env.Emulator.EffectiveVoiceURL(n.E164)
		switch {
		case tw.VoiceApplicationSID != "":
			eff = "TwiML application"
		case eff == "":
			eff = "(nowhere)"
		}
		sms, _, _, _ := env.Emulator.EffectiveSmsURL(n.E164)
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", n.E164, orDash(tw.VoiceURL), tw.VoiceMethod, orDash(tw.VoiceApplicationSID), eff, orDash(sms))
	}
	_ = w.Flush()
}

func show(out string, err error) error {
	fmt.Print(out)
	return err
}

func section(title string) {
	fmt.Printf("\n── %s %s\n", title, strings.Repeat("─", max(0, 70-len(title))))
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(strings.TrimSpace(s), "><", ">\n    <")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

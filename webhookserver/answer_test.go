package webhookserver

import (
	"encoding/xml"
	"strings"
	"testing"
)

// parsedAnswer is what Twilio reads from an answer.
type parsedAnswer struct {
	Recording *struct {
		Channels string `xml:"channels,attr"`
		Track    string `xml:"track,attr"`
		Callback string `xml:"recordingStatusCallback,attr"`
	} `xml:"Start>Recording"`
	Stream struct {
		URL    string `xml:"url,attr"`
		Params []struct {
			Name  string `xml:"name,attr"`
			Value string `xml:"value,attr"`
		} `xml:"Parameter"`
	} `xml:"Connect>Stream"`
}

// The pre-rendered templates must say exactly what rendering each answer
// through twiml says, for any parameter values.
func TestAnswerTemplatesMatchTwiML(t *testing.T) {
	const sid = "AC0123456789abcdef0123456789abcdef"
	tpl, err := newAnswerTemplates("https://v.example.com/twilio/recording", "wss://v.example.com/twilio/stream/")
	if err != nil {
		t.Fatal(err)
	}
	for _, record := range []bool{true, false} {
		for _, from := range []string{"+15551234567", `client:<x>&"y'`, "a\tb\nc", placeholderTo, ""} {
			got := tpl.render(record, sid, from, "+15559876543", "v1.123.abc")
			want, err := answerTwiML(answer{record: record, recordingCallback: "https://v.example.com/twilio/recording",
				streamURL: "wss://v.example.com/twilio/stream/" + sid, from: from, to: "+15559876543", token: "v1.123.abc"})
			if err != nil {
				t.Fatal(err)
			}
			var g, w parsedAnswer
			if err := xml.Unmarshal([]byte(got), &g); err != nil {
				t.Fatalf("template answer for From %q is not XML: %v\n%s", from, err, got)
			}
			if err := xml.Unmarshal([]byte(want), &w); err != nil {
				t.Fatal(err)
			}
			if (g.Recording != nil) != record || (g.Recording != nil && *g.Recording != *w.Recording) || g.Stream.URL != w.Stream.URL ||
				len(g.Stream.Params) != 3 || g.Stream.Params[0].Value != from || g.Stream.Params[1].Value != "+15559876543" || g.Stream.Params[2].Value != "v1.123.abc" {
				t.Errorf("record=%v From %q:\n got %+v\nwant %+v", record, from, g, w)
			}
		}
	}
}

func TestValidAccountSID(t *testing.T) {
	for sid, want := range map[string]bool{
		"AC0123456789abcdef0123456789abcdef": true,
		"AC0000000000000000000000000000be":   true, // the benchmarks' (30 digits)
		"ACx":                                true,
		"AC":                                 false,
		"":                                   false,
		"ac0123":                             false,
		"AC01/..":                            false,
		"AC01%2F":                            false,
		"AC01<x>":                            false,
		"AC01 2":                             false,
		"AC" + strings.Repeat("0", 65):       false,
	} {
		if got := validAccountSID(sid); got != want {
			t.Errorf("validAccountSID(%q) = %v, want %v", sid, got, want)
		}
	}
}

package webhookserver

import (
	"encoding/xml"
	"errors"
	"io"
	"net/url"
	"reflect"
	"strings"
	"testing"

	. "github.com/onsi/gomega"

	twiliov1 "github.com/loquent/twilio-voice-operator/api/v1alpha1"
)

// xmlNode is an XML element as Twilio reads it: name, attributes (in no
// particular order; an empty one counts as absent, as twiml omits empty
// attributes while the templates keep an empty value), trimmed text and
// children in document order.
type xmlNode struct {
	Name     string
	Attrs    map[string]string
	Text     string
	Children []xmlNode
}

// parseXMLTree parses doc into its root element.
func parseXMLTree(t testing.TB, doc string) xmlNode {
	t.Helper()
	dec := xml.NewDecoder(strings.NewReader(doc))
	var stack []*xmlNode
	var root *xmlNode
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("not XML: %v\n%s", err, doc)
		}
		switch e := tok.(type) {
		case xml.StartElement:
			n := &xmlNode{Name: e.Name.Local, Attrs: map[string]string{}}
			for _, a := range e.Attr {
				if a.Value != "" {
					n.Attrs[a.Name.Local] = a.Value
				}
			}
			stack = append(stack, n)
		case xml.CharData:
			if len(stack) > 0 {
				stack[len(stack)-1].Text += string(e)
			}
		case xml.EndElement:
			n := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			n.Text = strings.TrimSpace(n.Text)
			if len(stack) == 0 {
				root = n
			} else {
				p := stack[len(stack)-1]
				p.Children = append(p.Children, *n)
			}
		}
	}
	if root == nil {
		t.Fatalf("no root element: %s", doc)
	}
	return *root
}

// fallbackCases are spec.fallback and status.savedRouting combinations, with
// the top-level verbs they put after </Connect>.
var fallbackCases = []struct {
	name  string
	spec  *twiliov1.FallbackSpec
	saved *twiliov1.SavedRouting
	verbs []string
}{
	{"none", nil, nil, nil},
	{"say (default action)", &twiliov1.FallbackSpec{}, nil, []string{"Say", "Hangup"}},
	{"say", &twiliov1.FallbackSpec{Action: twiliov1.FallbackSay, Message: `Press <1> & say "hi"`}, nil, []string{"Say", "Hangup"}},
	{"dial", &twiliov1.FallbackSpec{Action: twiliov1.FallbackDial, Number: "+14155550100"}, nil, []string{"Dial"}},
	{"original", &twiliov1.FallbackSpec{Action: twiliov1.FallbackOriginal},
		&twiliov1.SavedRouting{VoiceURL: "https://old.example.com/voice?a=1&b=2", VoiceMethod: "GET"}, []string{"Redirect"}},
	{"original without a saved URL", &twiliov1.FallbackSpec{Action: twiliov1.FallbackOriginal},
		&twiliov1.SavedRouting{VoiceApplicationSID: "AP1"}, []string{"Say", "Hangup"}},
}

// The pre-rendered templates, with a route's pre-rendered fallback, must say
// exactly what rendering each whole answer through twiml says, for any
// parameter values and every kind of fallback.
func TestAnswerTemplatesMatchTwiML(t *testing.T) {
	const sid = "AC0123456789abcdef0123456789abcdef"
	tpl, err := newAnswerTemplates(recordingCallbackURL("https://v.example.com"), "wss://v.example.com/twilio/stream/")
	if err != nil {
		t.Fatal(err)
	}
	for _, fc := range fallbackCases {
		frag, _, err := RenderFallback(fc.spec, fc.saved)
		if err != nil {
			t.Fatal(err)
		}
		_, verbs := fallbackVerbs(fc.spec, fc.saved)
		for _, record := range []bool{true, false} {
			for i, from := range []string{"+15551234567", `client:<x>&"y'`, "a\tb\nc", placeholderTo, placeholderFallback, ""} {
				to := []string{"+15559876543", "client:bob <&>", "sip:a b@c?d=1#x", "+15559876543", "é+%", ""}[i]
				got := tpl.render(record, frag, sid, from, to, "v1.123.abc")
				// The called number is query-escaped in the callback URL: every
				// byte but the unreserved ones as %XX (url.QueryEscape, with a
				// space as %20 rather than +).
				callback := "https://v.example.com/twilio/recording?to=" + strings.ReplaceAll(url.QueryEscape(to), "+", "%20") + ConnectionOverrides
				want, err := answerTwiML(answer{record: record, recordingCallback: callback,
					streamURL: "wss://v.example.com/twilio/stream/" + sid, from: from, to: to, token: "v1.123.abc", fallback: verbs})
				if err != nil {
					t.Fatal(err)
				}
				if g, w := parseXMLTree(t, got), parseXMLTree(t, want); !reflect.DeepEqual(g, w) {
					t.Errorf("%s, record=%v, From %q, To %q:\n got %+v\nwant %+v", fc.name, record, from, to, g, w)
				}
				if strings.Contains(got, "__tvo_") && from != placeholderTo && from != placeholderFallback {
					t.Errorf("a placeholder is left in %s", got)
				}
				if record {
					d := parseTwiML(t, got)
					u, err := url.Parse(d.Start.Recording.Callback)
					if err != nil || u.Query().Get(RecordingToParam) != to || "#"+u.Fragment != ConnectionOverrides {
						t.Errorf("callback URL %q does not carry to=%q and the overrides (%v)", d.Start.Recording.Callback, to, err)
					}
				}
			}
		}
	}
}

// Without a fallback, nothing follows </Connect>: the answer is what it was
// before fallbacks existed.
func TestAnswerWithoutFallbackEndsAtConnect(t *testing.T) {
	g := NewWithT(t)
	tpl, err := newAnswerTemplates(recordingCallbackURL("https://v.example.com"), "wss://v.example.com/twilio/stream/")
	g.Expect(err).NotTo(HaveOccurred())
	frag, action, err := RenderFallback(nil, &twiliov1.SavedRouting{VoiceURL: "https://old.example.com/voice"})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(frag).To(BeEmpty())
	g.Expect(action).To(BeEmpty())
	for _, record := range []bool{true, false} {
		doc := tpl.render(record, "", "AC1", "+15551234567", "+15559876543", "v1.1.x")
		g.Expect(doc).To(HaveSuffix("</Stream></Connect></Response>"))
		g.Expect(doc).To(HavePrefix(`<?xml version="1.0" encoding="UTF-8"?><Response>`))
		g.Expect(doc).NotTo(ContainSubstring("__tvo_"))
	}
}

// TestFallbackTwiML reads each kind of fallback back from a call's answer
// as Twilio would.
func TestFallbackTwiML(t *testing.T) {
	tpl, err := newAnswerTemplates(recordingCallbackURL("https://v.example.com"), "wss://v.example.com/twilio/stream/")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		spec   *twiliov1.FallbackSpec
		saved  *twiliov1.SavedRouting
		action twiliov1.FallbackAction
		check  func(g Gomega, d twimlDoc)
	}{
		{"none", nil, nil, "", func(g Gomega, d twimlDoc) {
			g.Expect(d.Order).To(Equal([]string{"Start", "Connect"}))
		}},
		{"say, default message", &twiliov1.FallbackSpec{Action: twiliov1.FallbackSay}, nil, twiliov1.FallbackSay, func(g Gomega, d twimlDoc) {
			g.Expect(d.Order).To(Equal([]string{"Start", "Connect", "Say", "Hangup"}))
			g.Expect(d.Say).To(Equal([]string{unavailableMessage}))
		}},
		{"empty action is say", &twiliov1.FallbackSpec{Message: "Call back later."}, nil, twiliov1.FallbackSay, func(g Gomega, d twimlDoc) {
			g.Expect(d.Order).To(Equal([]string{"Start", "Connect", "Say", "Hangup"}))
			g.Expect(d.Say).To(Equal([]string{"Call back later."}))
		}},
		{"say escapes its message", &twiliov1.FallbackSpec{Action: twiliov1.FallbackSay, Message: `</Say><Dial>+1900</Dial> <&> "q" 'a'`}, nil, twiliov1.FallbackSay,
			func(g Gomega, d twimlDoc) {
				g.Expect(d.Order).To(Equal([]string{"Start", "Connect", "Say", "Hangup"}))
				g.Expect(d.Say).To(Equal([]string{`</Say><Dial>+1900</Dial> <&> "q" 'a'`}))
				g.Expect(d.Dial).To(BeEmpty())
			}},
		{"dial", &twiliov1.FallbackSpec{Action: twiliov1.FallbackDial, Number: "+14155550100"}, nil, twiliov1.FallbackDial, func(g Gomega, d twimlDoc) {
			g.Expect(d.Order).To(Equal([]string{"Start", "Connect", "Dial"}))
			g.Expect(d.Dial).To(Equal([]string{"+14155550100"}))
		}},
		{"dial without a number is say", &twiliov1.FallbackSpec{Action: twiliov1.FallbackDial}, nil, twiliov1.FallbackSay, func(g Gomega, d twimlDoc) {
			g.Expect(d.Order).To(Equal([]string{"Start", "Connect", "Say", "Hangup"}))
		}},
		{"original", &twiliov1.FallbackSpec{Action: twiliov1.FallbackOriginal, Message: "unused"},
			&twiliov1.SavedRouting{VoiceURL: "https://old.example.com/voice?a=1&b=<2>", VoiceMethod: "GET"}, twiliov1.FallbackOriginal,
			func(g Gomega, d twimlDoc) {
				g.Expect(d.Order).To(Equal([]string{"Start", "Connect", "Redirect"}))
				g.Expect(d.Redirect).To(HaveLen(1))
				g.Expect(d.Redirect[0].URL).To(Equal("https://old.example.com/voice?a=1&b=<2>"))
				g.Expect(d.Redirect[0].Method).To(Equal("GET"))
			}},
		{"original, method defaults to POST", &twiliov1.FallbackSpec{Action: twiliov1.FallbackOriginal},
			&twiliov1.SavedRouting{VoiceURL: "https://old.example.com/voice"}, twiliov1.FallbackOriginal,
			func(g Gomega, d twimlDoc) {
				g.Expect(d.Redirect).To(HaveLen(1))
				g.Expect(d.Redirect[0].Method).To(Equal("POST"))
			}},
		{"original without saved routing is say", &twiliov1.FallbackSpec{Action: twiliov1.FallbackOriginal}, nil, twiliov1.FallbackSay,
			func(g Gomega, d twimlDoc) {
				g.Expect(d.Order).To(Equal([]string{"Start", "Connect", "Say", "Hangup"}))
				g.Expect(d.Say).To(Equal([]string{unavailableMessage}))
			}},
		{"original without a saved voice URL is say", &twiliov1.FallbackSpec{Action: twiliov1.FallbackOriginal},
			&twiliov1.SavedRouting{TrunkSID: "TK1", VoiceMethod: "POST"}, twiliov1.FallbackSay,
			func(g Gomega, d twimlDoc) {
				g.Expect(d.Order).To(Equal([]string{"Start", "Connect", "Say", "Hangup"}))
				g.Expect(d.Say).To(Equal([]string{unavailableMessage}))
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			frag, action, err := RenderFallback(tt.spec, tt.saved)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(action).To(Equal(tt.action))
			d := parseTwiML(t, tpl.render(true, frag, "AC1", "+15551234567", "+15559876543", "v1.1.x"))
			g.Expect(d.params()).To(HaveKeyWithValue("token", "v1.1.x"))
			tt.check(g, d)
		})
	}
}

func TestCompileTemplate(t *testing.T) {
	g := NewWithT(t)
	all := placeholderAccount + placeholderFrom + placeholderTo + placeholderToken + placeholderFallback
	once := [numSlots]int{1, 1, 1, 1, 1, 0}
	tpl, err := compileTemplate("a"+placeholderFallback+"b"+strings.ReplaceAll(all, placeholderFallback, "")+"c", once)
	g.Expect(err).NotTo(HaveOccurred())
	vals := [numSlots]string{"A", "F", "T", "K", "<x/>", "unused"}
	g.Expect(tpl.fill(&vals)).To(Equal("a<x/>bAFTKc"))
	_, err = compileTemplate(all+placeholderTo, once)
	g.Expect(err).To(MatchError(ContainSubstring(placeholderTo + " occurs 2 times, want 1")))
	_, err = compileTemplate(strings.ReplaceAll(all, placeholderToken, ""), once)
	g.Expect(err).To(MatchError(ContainSubstring(placeholderToken + " occurs 0 times, want 1")))
	_, err = compileTemplate(all+placeholderCallbackTo, once)
	g.Expect(err).To(MatchError(ContainSubstring(placeholderCallbackTo + " occurs 1 times, want 0")))

	// The callback number slot is written query-escaped.
	withTo := once
	withTo[slotCallbackTo] = 1
	tpl, err = compileTemplate(all+"?to="+placeholderCallbackTo, withTo)
	g.Expect(err).NotTo(HaveOccurred())
	vals[slotCallbackTo] = "+1 5&é"
	g.Expect(tpl.fill(&vals)).To(Equal("AFTK<x/>?to=%2B1%205%26%C3%A9"))
}

func TestXMLAttr(t *testing.T) {
	for _, v := range []string{"", "+15551234567", "v1.1800000000.abc-_", "a\"b", "a'b", "<&>", "tab\there", "nl\n", "cr\r", "\x01", "é", "\xff", "\x7f", "client:bob"} {
		var b strings.Builder
		_ = xml.EscapeText(&b, []byte(v))
		if got := xmlAttr(v); got != b.String() {
			t.Errorf("xmlAttr(%q) = %q, want %q", v, got, b.String())
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

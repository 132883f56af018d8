package callsim

import (
	"encoding/xml"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// RecordingInstruction is a parsed <Start><Recording> noun. Fields hold the
// attribute values as written (empty when absent); the simulator applies no
// defaults because Twilio's defaults for the noun are unconfirmed
// (twilio-facts.md §4.3).
type RecordingInstruction struct {
	Channels                      string   // channels: mono | dual
	Track                         string   // track: inbound | outbound | both
	Trim                          string   // trim: trim-silence | do-not-trim
	RecordingStatusCallback       string   // absolute URL of the status callback
	RecordingStatusCallbackMethod string   // GET | POST (POST when empty)
	RecordingStatusCallbackEvent  []string // space-separated list, split; nil when absent
}

// streamInstruction is a parsed <Connect><Stream>.
type streamInstruction struct {
	URL        string
	Name       string
	Track      string
	Parameters map[string]string
}

// twimlDoc is a parsed voice TwiML document.
type twimlDoc struct {
	Verbs []string // top-level verb names in document order
	steps []step   // the top-level verbs, in document order, as the simulator runs them
}

// step is one top-level verb of a document. Only the fields of its verb are set.
type step struct {
	verb      string                // the verb's name (Start, Connect, Say, ...)
	recording *RecordingInstruction // Start: its <Recording>, if any
	stream    *streamInstruction    // Connect: its <Stream>, if any
	text      string                // Say: the text; Dial: the number; Redirect: the URL (trimmed)
	method    string                // Redirect: GET or POST (POST when the attribute is absent)
}

// node is a generic XML element, kept in document order.
type node struct {
	XMLName  xml.Name
	Attrs    []xml.Attr `xml:",any,attr"`
	Text     string     `xml:",chardata"`
	Children []node     `xml:",any"`
}

func (n node) attr(name string) string {
	for _, a := range n.Attrs {
		if a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}

// parseTwiML parses a voice TwiML document. It fails on a document whose root
// is not <Response> (Twilio error 12100), on a second <Connect><Stream> or
// <Recording>, on a stream URL Twilio would refuse (see checkStreamURL) and
// on a <Redirect> without a URL or with a method other than GET or POST.
// Every top-level verb becomes a step; the ones the simulator does not act
// on (see Result.Verbs) are skipped when the document runs.
func parseTwiML(body []byte) (twimlDoc, error) {
	var root node
	if err := xml.Unmarshal(body, &root); err != nil {
		return twimlDoc{}, fmt.Errorf("parse TwiML (Twilio error 12100): %w", err)
	}
	if root.XMLName.Local != "Response" {
		return twimlDoc{}, fmt.Errorf("parse TwiML (Twilio error 12100): root element is <%s>, want <Response>", root.XMLName.Local)
	}

	var doc twimlDoc
	recordings, streams := 0, 0
	for _, verb := range root.Children {
		st := step{verb: verb.XMLName.Local}
		doc.Verbs = append(doc.Verbs, st.verb)
		switch st.verb {
		case "Start":
			for _, noun := range verb.Children {
				if noun.XMLName.Local != "Recording" {
					continue
				}
				if recordings++; recordings > 1 {
					return twimlDoc{}, fmt.Errorf("parse TwiML: more than one <Recording>")
				}
				st.recording = parseRecording(noun)
			}
		case "Connect":
			for _, noun := range verb.Children {
				if noun.XMLName.Local != "Stream" {
					continue
				}
				if streams++; streams > 1 {
					return twimlDoc{}, fmt.Errorf("parse TwiML: more than one <Connect><Stream>")
				}
				s, err := parseStream(noun)
				if err != nil {
					return twimlDoc{}, err
				}
				st.stream = s
			}
		case "Say":
			st.text = strings.TrimSpace(verb.Text)
		case "Dial":
			// <Dial>N</Dial>, or <Dial><Number>N</Number></Dial>.
			st.text = strings.TrimSpace(verb.Text)
			for _, noun := range verb.Children {
				if noun.XMLName.Local == "Number" {
					st.text = strings.TrimSpace(noun.Text)
					break
				}
			}
		case "Redirect":
			st.text = strings.TrimSpace(verb.Text)
			if st.text == "" {
				return twimlDoc{}, fmt.Errorf("parse TwiML: <Redirect> without a URL")
			}
			switch m := strings.ToUpper(verb.attr("method")); m {
			case "":
				st.method = http.MethodPost
			case http.MethodGet, http.MethodPost:
				st.method = m
			default:
				return twimlDoc{}, fmt.Errorf("parse TwiML: <Redirect method=%q>: must be GET or POST", verb.attr("method"))
			}
		}
		doc.steps = append(doc.steps, st)
	}
	return doc, nil
}

func parseRecording(n node) *RecordingInstruction {
	r := &RecordingInstruction{
		Channels:                      n.attr("channels"),
		Track:                         n.attr("track"),
		Trim:                          n.attr("trim"),
		RecordingStatusCallback:       n.attr("recordingStatusCallback"),
		RecordingStatusCallbackMethod: n.attr("recordingStatusCallbackMethod"),
	}
	if events := strings.Fields(n.attr("recordingStatusCallbackEvent")); len(events) > 0 {
		r.RecordingStatusCallbackEvent = events
	}
	return r
}

func parseStream(n node) (*streamInstruction, error) {
	s := &streamInstruction{
		URL:        n.attr("url"),
		Name:       n.attr("name"),
		Track:      n.attr("track"),
		Parameters: map[string]string{},
	}
	if err := checkStreamURL(s.URL); err != nil {
		return nil, err
	}
	for _, p := range n.Children {
		if p.XMLName.Local != "Parameter" {
			continue
		}
		name := p.attr("name")
		if name == "" {
			return nil, fmt.Errorf("parse TwiML: <Parameter> without a name")
		}
		s.Parameters[name] = p.attr("value")
	}
	return s, nil
}

// checkStreamURL applies Twilio's rules for <Stream url>: absolute, wss (ws is
// accepted for local runs) and without a query string (twilio-facts.md §4.1,
// errors 31920 and 31922).
func checkStreamURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("stream URL %q: %w", raw, err)
	}
	if u.Scheme != "wss" && u.Scheme != "ws" {
		return fmt.Errorf("stream URL %q: scheme must be wss (Twilio error 31922)", raw)
	}
	if u.Host == "" {
		return fmt.Errorf("stream URL %q: no host", raw)
	}
	if u.RawQuery != "" || u.ForceQuery {
		return fmt.Errorf("stream URL %q: query strings are not supported, use <Parameter> (Twilio error 31920)", raw)
	}
	return nil
}

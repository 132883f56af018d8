package callsim

// message is one Media Streams JSON message in either direction
// (twilio-facts.md §5.2, §5.3). Field order matches Twilio's.
type message struct {
	Event          string        `json:"event"`
	SequenceNumber string        `json:"sequenceNumber,omitempty"`
	StreamSid      string        `json:"streamSid,omitempty"`
	Protocol       string        `json:"protocol,omitempty"`
	Version        string        `json:"version,omitempty"`
	Start          *startPayload `json:"start,omitempty"`
	Media          *mediaPayload `json:"media,omitempty"`
	DTMF           *dtmfPayload  `json:"dtmf,omitempty"`
	Mark           *markPayload  `json:"mark,omitempty"`
	Stop           *stopPayload  `json:"stop,omitempty"`
}

type startPayload struct {
	StreamSid        string            `json:"streamSid"`
	AccountSid       string            `json:"accountSid"`
	CallSid          string            `json:"callSid"`
	Tracks           []string          `json:"tracks"`
	CustomParameters map[string]string `json:"customParameters"`
	MediaFormat      mediaFormat       `json:"mediaFormat"`
}

type mediaFormat struct {
	Encoding   string `json:"encoding"`
	SampleRate int    `json:"sampleRate"`
	Channels   int    `json:"channels"`
}

type mediaPayload struct {
	Track     string `json:"track,omitempty"`
	Chunk     string `json:"chunk,omitempty"`
	Timestamp string `json:"timestamp,omitempty"`
	Payload   string `json:"payload"`
}

type dtmfPayload struct {
	Track string `json:"track"`
	Digit string `json:"digit"`
}

type markPayload struct {
	Name string `json:"name"`
}

type stopPayload struct {
	AccountSid string `json:"accountSid"`
	CallSid    string `json:"callSid"`
}

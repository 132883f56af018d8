// Package callsim places simulated inbound calls the way Twilio does, so the
// webhook server (or any Twilio voice application) can be exercised without a
// Twilio account.
//
// One call is: a signed POST of the voice webhook to the number's voice URL
// (and when it fails, of the fallback URL, if the call has one); running the
// TwiML answer verb by verb, as Twilio does: <Start><Recording>; for
// <Connect><Stream>, a signed WebSocket connection speaking Twilio's Media
// Streams protocol (connected, start, paced media frames, dtmf, mark echoes,
// stop), after which the verbs following </Connect> run only if the server,
// not the caller, ended the stream; <Say>, <Hangup>, <Dial> (recorded, and
// the end of the simulated call) and <Redirect> (a signed request whose TwiML
// replaces the document); and, when the TwiML started a <Recording> with a
// recordingStatusCallback, the signed recording status callback once the
// call has ended, retried as the connection overrides in the callback URL's
// fragment ask (ParseOverrides).
//
// SendSMS delivers an inbound SMS to a number's SmsUrl the same way: signed,
// form-encoded, retried per the URL's connection overrides.
//
// Facts about the wire format come from shared/reference/twilio-facts.md
// (§2.5 signatures, §4 TwiML, §5 Media Streams, §6 webhook parameters, §7
// connection overrides). Where
// Twilio's behaviour is unconfirmed the simulator picks the strict reading and
// says so on the identifier concerned.
//
// The package deliberately does not depend on the REST emulator in the parent
// package: callers pass the voice URL and auth token of the number they want
// to call.
package callsim

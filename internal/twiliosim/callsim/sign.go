package callsim

import (
	"net/url"

	"github.com/loquent/twilio-voice-operator/internal/twiliosig"
)

// SignatureHeader is the HTTP header that carries Twilio's request signature.
const SignatureHeader = twiliosig.SignatureHeader

// Sign returns the X-Twilio-Signature value Twilio would send (see twiliosig.Sign).
func Sign(authToken, fullURL string, params url.Values) string {
	return twiliosig.Sign(authToken, fullURL, params)
}

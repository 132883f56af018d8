// Package twiliosim is an in-memory emulator of the part of Twilio's REST API
// (version 2010-04-01) that the operator talks to: fetching an Account,
// searching AvailablePhoneNumbers, and buying (creating), listing, fetching,
// updating and releasing IncomingPhoneNumbers. It speaks
// the wire format that the real twilio-go client parses, so envtest suites,
// benchmarks and demos drive it through twilio-go over HTTP.
//
// The package deliberately shares no code with the project's Twilio adapter
// (internal/twilio): it is written from Twilio's documented wire behaviour
// (the OpenAPI spec of API 2010-04-01 and twilio-go's parsing), so that a
// misunderstanding of the wire format cannot hide in both the adapter and
// its test double.
//
// # Behaviour where Twilio's documentation is silent
//
//   - Credentials: HTTP Basic with an Account SID and its auth token, or an
//     API key SID (SK…) and its secret. A suspended or closed account cannot
//     authenticate. Failures answer 401 with code 20003.
//   - A path account that the credentials may not act on (a different,
//     unknown or parent account) answers 401 code 20003, the code Twilio
//     documents for "subaccount credentials to access master account". The
//     credentials of a parent account may act on its subaccounts.
//   - Unknown paths and numbers (including numbers of other accounts) answer
//     404 code 20404; a known path with the wrong HTTP method answers 405
//     code 20004.
//   - List: PhoneNumber matches when the pattern occurs anywhere in the
//     number ("partial numbers"), '*' matching any one digit; FriendlyName
//     matches exactly. Origin other than "twilio" matches nothing; Beta is
//     accepted (no emulated number is beta). Filters are kept in the page
//     links. PageSize must be 1..1000 (default 50) and Page must be
//     >= 0; out-of-range values and Page > 0 without a PageToken answer 400
//     code 70002. Numbers are listed in the order they were added. Page
//     tokens are "PA"+SID (the page after that number) and "PB"+SID (the page
//     before it), so paging stays stable while numbers are added or released.
//   - Unset fields follow the OpenAPI list example: voice_url and
//     voice_fallback_url are null, voice_application_sid is "", trunk_sid is
//     null, status_callback and sms_url are "".
//   - Update: parameters that are absent are left alone and an empty value
//     clears a field. An empty method parameter restores the default POST,
//     an empty FriendlyName restores the formatted number. Invalid URLs
//     answer 400 code 21502; invalid methods, both a VoiceApplicationSid and a
//     TrunkSid, SIDs with the wrong prefix or an unknown transfer AccountSid
//     answer 400 code 70002; a FriendlyName longer than 64 characters answers
//     400 code 20002. Nothing is applied when any parameter is invalid.
//     DateUpdated advances only when a value changes. Parameters the emulator
//     does not model (VoiceReceiveMode, Emergency*, Sms* other than SmsUrl…)
//     are accepted and ignored.
//   - Numbers on sale: New stocks none. AddAvailable stocks one number
//     (country, type Local, Mobile or TollFree, locality, region, postal
//     code, capabilities…); SeedAvailable(country, n) stocks n Local numbers
//     of the US, Canada or Great Britain in a few cities, skipping numbers
//     already stocked or owned. Numbers an account owns are never on sale.
//   - Search: GET .../AvailablePhoneNumbers/{Country}/{Local|Mobile|
//     TollFree}.json lists the stocked numbers of that country and type in
//     the order they were stocked. A country other than US, CA, GB or one
//     ever stocked answers 404 code 20404 (so does any other type). Filters:
//     AreaCode (US and Canadian numbers only), Contains (2 to 16 characters:
//     digits, letters read as keypad digits, '*' for any one digit, a leading
//     '+' anchoring at the start; it matches anywhere in the number),
//     InRegion, InLocality and InRateCenter (case-insensitive), InPostalCode,
//     InLata, Voice/Sms/Mms/FaxEnabled, Exclude{All,Local,Foreign}
//     AddressRequired and Beta=false; NearNumber, NearLatLong and Distance
//     are accepted and ignored. An invalid value answers 400 code 70002. The
//     answer is a single page (next_page_uri null) of at most
//     min(PageSize, 50) numbers; PageSize must be 1..1000 (default 50).
//     Twilio documents no exact cap; 50 is the emulator's choice.
//   - Create (purchase): POST .../IncomingPhoneNumbers.json buys PhoneNumber,
//     or with AreaCode alone the first number on sale in that +1 area code,
//     and answers 201 with the new IncomingPhoneNumber. The routing and
//     FriendlyName parameters of the same form are validated and applied as
//     an update's are; when one is invalid nothing is bought. Errors (400):
//     21421 for a PhoneNumber that is not E.164, 21422 for one that is not
//     on sale (never stocked, already bought by any account, or released),
//     21451 for an AreaCode that is not three digits, 21452 when nothing is
//     on sale in the area code (this code could not be confirmed in Twilio's
//     documentation), 70002 when neither PhoneNumber nor AreaCode is given.
//     A bought number leaves the inventory for good: releasing it (DELETE)
//     does not put it back on sale, as Twilio quarantines released numbers.
//     Faults apply as to any write: LoseAnswer buys the number and loses the
//     answer.
//   - The concurrency limit counts the requests in flight per path account;
//     a rejected request answers at once, without the configured latency.
//     Every answer carries a Twilio-Concurrent-Requests header.
//   - The request log records status 0 for a connection that was reset and
//     499 for a request whose client went away during the latency.
package twiliosim

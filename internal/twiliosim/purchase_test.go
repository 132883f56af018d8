package twiliosim

import (
	"net/http"
	"sync"
	"testing"

	. "github.com/onsi/gomega"
	openapi "github.com/twilio/twilio-go/rest/api/v2010"
)

func localSearch() *openapi.ListAvailablePhoneNumberLocalParams {
	return &openapi.ListAvailablePhoneNumberLocalParams{}
}

func availablePhones(nums []openapi.ApiV2010AvailablePhoneNumberLocal) []string {
	out := make([]string, 0, len(nums))
	for _, n := range nums {
		out = append(out, *n.PhoneNumber)
	}
	return out
}

func buy(e164 string) *openapi.CreateIncomingPhoneNumberParams {
	return (&openapi.CreateIncomingPhoneNumberParams{}).SetPhoneNumber(e164)
}

// stockSearchNumbers stocks numbers that differ in one property each.
func stockSearchNumbers(s *Server) {
	s.AddAvailable(AvailableNumber{PhoneNumber: "+14155550123", Locality: "San Francisco", Region: "CA", PostalCode: "94105",
		RateCenter: "SNFC CNTRL", LATA: "722", Latitude: 37.7749, Longitude: -122.4194})
	s.AddAvailable(AvailableNumber{PhoneNumber: "+14155557867", Locality: "Oakland", Region: "CA", PostalCode: "94607",
		Capabilities: &Capabilities{Voice: true}}) // 7867 is STOP on a keypad; voice only
	s.AddAvailable(AvailableNumber{PhoneNumber: "+12125550142", Locality: "New York", Region: "NY", PostalCode: "10001",
		AddressRequirements: "local"})
	s.AddAvailable(AvailableNumber{PhoneNumber: "+18005550100", Type: NumberTypeTollFree})
	s.AddAvailable(AvailableNumber{PhoneNumber: "+442079460100", Country: "GB", Locality: "London"})
	s.AddAvailable(AvailableNumber{PhoneNumber: "+13125550199", Beta: true})
}

// A search finds the stocked numbers of its country and type that pass
// every filter, decoded by twilio-go field for field.
func TestSearchAvailableFilters(t *testing.T) {
	g := NewWithT(t)
	s, base := startSim(t)
	stockSearchNumbers(s)
	rc := newTwilio(t, base, testAccount, testToken, testAccount)
	search := func(p *openapi.ListAvailablePhoneNumberLocalParams) []string {
		nums, err := rc.Api.ListAvailablePhoneNumberLocal("US", p)
		g.Expect(err).NotTo(HaveOccurred())
		return availablePhones(nums)
	}

	g.Expect(search(nil)).To(Equal([]string{"+14155550123", "+14155557867", "+12125550142", "+13125550199"}))
	g.Expect(search(localSearch().SetAreaCode(415))).To(Equal([]string{"+14155550123", "+14155557867"}))
	g.Expect(search(localSearch().SetContains("555012*"))).To(Equal([]string{"+14155550123"}))
	g.Expect(search(localSearch().SetContains("STOP"))).To(Equal([]string{"+14155557867"}))
	g.Expect(search(localSearch().SetContains("+1212"))).To(Equal([]string{"+12125550142"}))
	g.Expect(search(localSearch().SetInRegion("ny"))).To(Equal([]string{"+12125550142"}))
	g.Expect(search(localSearch().SetInLocality("oakland"))).To(Equal([]string{"+14155557867"}))
	g.Expect(search(localSearch().SetInPostalCode("94105"))).To(Equal([]string{"+14155550123"}))
	g.Expect(search(localSearch().SetSmsEnabled(true).SetAreaCode(415))).To(Equal([]string{"+14155550123"}))
	g.Expect(search(localSearch().SetSmsEnabled(false))).To(Equal([]string{"+14155557867"}))
	g.Expect(search(localSearch().SetExcludeAllAddressRequired(true).SetBeta(false))).
		To(Equal([]string{"+14155550123", "+14155557867"}))
	g.Expect(search(localSearch().SetAreaCode(617))).To(BeEmpty())

	q := s.Requests()[len(s.Requests())-1]
	g.Expect(q).To(And(HaveField("Kind", KindListAvailable), HaveField("Method", http.MethodGet), HaveField("AccountSID", testAccount)))

	got, err := rc.Api.ListAvailablePhoneNumberLocal("US", localSearch().SetInPostalCode("94105"))
	g.Expect(err).NotTo(HaveOccurred())
	n := got[0]
	g.Expect(n.FriendlyName).To(Equal(ptr("(415) 555-0123")))
	g.Expect(n.Locality).To(Equal(ptr("San Francisco")))
	g.Expect(n.Region).To(Equal(ptr("CA")))
	g.Expect(n.RateCenter).To(Equal(ptr("SNFC CNTRL")))
	g.Expect(n.Lata).To(Equal(ptr("722")))
	g.Expect(n.IsoCountry).To(Equal(ptr("US")))
	g.Expect(n.AddressRequirements).To(Equal(ptr("none")))
	g.Expect(*n.Latitude).To(BeNumerically("~", 37.7749, 0.001))
	g.Expect(*n.Longitude).To(BeNumerically("~", -122.4194, 0.001))
	g.Expect(*n.Capabilities).To(And(HaveField("Voice", true), HaveField("Sms", true), HaveField("Mms", true)))

	tollFree, err := rc.Api.ListAvailablePhoneNumberTollFree("US", nil)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(tollFree).To(HaveLen(1))
	g.Expect(tollFree[0].PhoneNumber).To(Equal(ptr("+18005550100")))
	london, err := rc.Api.ListAvailablePhoneNumberLocal("GB", nil)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(availablePhones(london)).To(Equal([]string{"+442079460100"}))
	mobile, err := rc.Api.ListAvailablePhoneNumberMobile("GB", nil)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(mobile).To(BeEmpty(), "a known country with nothing of that type answers an empty list")
}

// Twilio answers an unknown country with 404, and refuses bad filters.
func TestSearchAvailableRefusals(t *testing.T) {
	g := NewWithT(t)
	s, base := startSim(t)
	rc := newTwilio(t, base, testAccount, testToken, testAccount)

	_, err := rc.Api.ListAvailablePhoneNumberLocal("XX", nil)
	g.Expect(restError(err)).To(And(HaveField("Status", 404), HaveField("Code", 20404)))
	nums, err := rc.Api.ListAvailablePhoneNumberLocal("US", nil)
	g.Expect(err).NotTo(HaveOccurred(), "the default countries are known with nothing stocked")
	g.Expect(nums).To(BeEmpty())
	_, err = rc.Api.ListAvailablePhoneNumberLocal("US", localSearch().SetContains("5"))
	g.Expect(restError(err)).To(And(HaveField("Status", 400), HaveField("Code", 70002)))
	_, err = rc.Api.ListAvailablePhoneNumberLocal("US", localSearch().SetContains("55-01"))
	g.Expect(restError(err)).To(HaveField("Code", 70002))
	_, err = rc.Api.ListAvailablePhoneNumberLocal("US", localSearch().SetPageSize(1001))
	g.Expect(restError(err)).To(HaveField("Code", 70002))

	path := base + apiPrefix + testAccount + "/AvailablePhoneNumbers/US/"
	status, _, _ := rawDo(t, http.MethodPost, path+"Local.json", testAccount, testToken, "AreaCode=415")
	g.Expect(status).To(Equal(http.StatusMethodNotAllowed))
	status, _, _ = rawDo(t, http.MethodGet, path+"Voip.json", testAccount, testToken, "")
	g.Expect(status).To(Equal(http.StatusNotFound), "types other than Local, Mobile and TollFree are not emulated")
	status, _, _ = rawDo(t, http.MethodGet, path+"Local.json", otherAcct, otherToken, "")
	g.Expect(status).To(Equal(http.StatusUnauthorized))
	g.Expect(s.CountRequests(KindListAvailable)).To(Equal(6))
}

// A search answers one page of at most 50 numbers, fewer when PageSize says so.
func TestSearchAvailablePageSize(t *testing.T) {
	g := NewWithT(t)
	s, base := startSim(t)
	s.SeedAvailable("US", 60)
	rc := newTwilio(t, base, testAccount, testToken, testAccount)

	all, err := rc.Api.ListAvailablePhoneNumberLocal("US", nil)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(all).To(HaveLen(maxAvailablePage))
	few, err := rc.Api.ListAvailablePhoneNumberLocal("US", localSearch().SetPageSize(3))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(few).To(HaveLen(3))
	g.Expect(s.CountRequests(KindListAvailable)).To(Equal(2), "one page each: no next page is followed")
}

// Seeding never offers a number an account owns or one already on sale.
func TestSeedAvailableAvoidsTakenNumbers(t *testing.T) {
	g := NewWithT(t)
	s, _ := startSim(t)
	s.AddNumber(Number{PhoneNumber: "+14155550100"})
	s.AddAvailable(AvailableNumber{PhoneNumber: "+12125550100"})

	first := s.SeedAvailable("US", 12)
	second := s.SeedAvailable("US", 12)
	seen := map[string]bool{"+14155550100": true, "+12125550100": true}
	for _, n := range append(first, second...) {
		g.Expect(seen[n.PhoneNumber]).To(BeFalse(), "%s offered twice or owned", n.PhoneNumber)
		seen[n.PhoneNumber] = true
		g.Expect(n).To(And(HaveField("Country", "US"), HaveField("Type", NumberTypeLocal)))
		g.Expect(n.Locality).NotTo(BeEmpty())
	}
	g.Expect(s.Available()).To(HaveLen(25))
	g.Expect(s.SeedAvailable("GB", 2)).To(HaveEach(HaveField("PhoneNumber", HavePrefix("+4420794"))))
	g.Expect(func() { s.SeedAvailable("ZZ", 1) }).To(Panic())
	g.Expect(func() { s.AddAvailable(AvailableNumber{PhoneNumber: "+14155550100"}) }).To(Panic(), "owned by an account")
	g.Expect(func() { s.AddAvailable(AvailableNumber{PhoneNumber: "4155550100"}) }).To(Panic(), "not E.164")
}

// Buying a number configures it in the same call, moves it into the account
// (where list, fetch, update and delete see it) and off the market.
func TestBuyNumberAppliesRoutingAtPurchase(t *testing.T) {
	g := NewWithT(t)
	s, base := startSim(t)
	stockSearchNumbers(s)
	rc := newTwilio(t, base, testAccount, testToken, testAccount)

	p := buy("+14155550123").SetVoiceUrl("https://voice.example.com/twilio/voice").SetVoiceMethod("get").
		SetStatusCallback("https://voice.example.com/status").SetFriendlyName("Front desk")
	got, err := rc.Api.CreateIncomingPhoneNumber(p)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got.AccountSid).To(Equal(ptr(testAccount)))
	g.Expect(got.PhoneNumber).To(Equal(ptr("+14155550123")))
	g.Expect(got.VoiceUrl).To(Equal(ptr("https://voice.example.com/twilio/voice")))
	g.Expect(got.VoiceMethod).To(Equal(ptr("GET")))
	g.Expect(got.VoiceFallbackMethod).To(Equal(ptr("POST")))
	g.Expect(got.FriendlyName).To(Equal(ptr("Front desk")))
	last := s.Requests()[len(s.Requests())-1]
	g.Expect(last).To(And(HaveField("Kind", KindCreateNumber), HaveField("Status", http.StatusCreated)))

	stored, ok := s.NumberByPhone("+14155550123")
	g.Expect(ok).To(BeTrue())
	g.Expect(stored).To(And(HaveField("SID", *got.Sid), HaveField("AccountSID", testAccount), HaveField("StatusCallback", "https://voice.example.com/status")))
	listed, err := rc.Api.ListIncomingPhoneNumber(nil)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(phoneNumbers(listed)).To(Equal([]string{"+14155550123"}))
	onSale, err := rc.Api.ListAvailablePhoneNumberLocal("US", localSearch().SetAreaCode(415))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(availablePhones(onSale)).To(Equal([]string{"+14155557867"}))

	_, err = rc.Api.CreateIncomingPhoneNumber(buy("+14155550123"))
	g.Expect(restError(err)).To(And(HaveField("Status", 400), HaveField("Code", 21422)), "bought numbers are not for sale")
	other := newTwilio(t, base, otherAcct, otherToken, otherAcct)
	_, err = other.Api.CreateIncomingPhoneNumber(buy("+14155550123"))
	g.Expect(restError(err)).To(HaveField("Code", 21422))

	// Released, it stays off the market: Twilio quarantines released numbers.
	g.Expect(rc.Api.DeleteIncomingPhoneNumber(*got.Sid, nil)).To(Succeed())
	_, err = rc.Api.CreateIncomingPhoneNumber(buy("+14155550123"))
	g.Expect(restError(err)).To(HaveField("Code", 21422))
	g.Expect(s.Available()).NotTo(ContainElement(HaveField("PhoneNumber", "+14155550123")))
}

// AreaCode alone buys the first number on sale there.
func TestBuyNumberByAreaCode(t *testing.T) {
	g := NewWithT(t)
	s, base := startSim(t)
	stockSearchNumbers(s)
	rc := newTwilio(t, base, testAccount, testToken, testAccount)

	got, err := rc.Api.CreateIncomingPhoneNumber((&openapi.CreateIncomingPhoneNumberParams{}).SetAreaCode("212"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got.PhoneNumber).To(Equal(ptr("+12125550142")))
	_, err = rc.Api.CreateIncomingPhoneNumber((&openapi.CreateIncomingPhoneNumberParams{}).SetAreaCode("212"))
	g.Expect(restError(err)).To(And(HaveField("Status", 400), HaveField("Code", 21452)))
	_, err = rc.Api.CreateIncomingPhoneNumber((&openapi.CreateIncomingPhoneNumberParams{}).SetAreaCode("21"))
	g.Expect(restError(err)).To(HaveField("Code", 21451))
}

// A refused purchase buys nothing.
func TestBuyNumberRefusals(t *testing.T) {
	g := NewWithT(t)
	s, base := startSim(t)
	stockSearchNumbers(s)
	rc := newTwilio(t, base, testAccount, testToken, testAccount)

	_, err := rc.Api.CreateIncomingPhoneNumber(buy("4155550123"))
	g.Expect(restError(err)).To(And(HaveField("Status", 400), HaveField("Code", 21421)))
	_, err = rc.Api.CreateIncomingPhoneNumber(&openapi.CreateIncomingPhoneNumberParams{})
	g.Expect(restError(err)).To(And(HaveField("Status", 400), HaveField("Code", 70002)))
	_, err = rc.Api.CreateIncomingPhoneNumber(buy("+14155550123").SetVoiceUrl("not a url"))
	g.Expect(restError(err)).To(HaveField("Code", 21502))
	_, err = rc.Api.CreateIncomingPhoneNumber(buy("+14155550123").SetVoiceApplicationSid("AP1").SetTrunkSid("TK1"))
	g.Expect(restError(err)).To(HaveField("Code", 70002))
	status, _, _ := rawDo(t, http.MethodPost, base+apiPrefix+testAccount+"/IncomingPhoneNumbers.json", otherAcct, otherToken, "PhoneNumber=%2B14155550123")
	g.Expect(status).To(Equal(http.StatusUnauthorized), "another account's credentials cannot buy for this one")

	_, owned := s.NumberByPhone("+14155550123")
	g.Expect(owned).To(BeFalse())
	g.Expect(s.Available()).To(ContainElement(HaveField("PhoneNumber", "+14155550123")))
}

// A lost answer is the purchase the client cannot know about: the number is
// bought, the client sees a transport error, and buying again is refused.
// The controller's "never buy twice" test relies on this.
func TestLoseAnswerOnCreateBuysTheNumber(t *testing.T) {
	g := NewWithT(t)
	s, base := startSim(t)
	stockSearchNumbers(s)
	rc := newTwilio(t, base, testAccount, testToken, testAccount)

	s.FailNext(func(r Request) bool { return r.Kind == KindCreateNumber }, Fault{LoseAnswer: true}, 1)
	_, err := rc.Api.CreateIncomingPhoneNumber(buy("+14155550123").SetVoiceUrl("https://voice.example.com/v"))
	g.Expect(err).To(HaveOccurred())
	g.Expect(restError(err)).To(BeNil(), "a transport error, not a Twilio answer")

	n, ok := s.NumberByPhone("+14155550123")
	g.Expect(ok).To(BeTrue(), "the purchase happened")
	g.Expect(n).To(And(HaveField("AccountSID", testAccount), HaveField("VoiceURL", "https://voice.example.com/v")))
	reqs := s.Requests()
	g.Expect(reqs).To(HaveLen(1))
	g.Expect(reqs[0]).To(And(HaveField("Kind", KindCreateNumber), HaveField("Status", http.StatusCreated), HaveField("AnswerLost", true)))

	_, err = rc.Api.CreateIncomingPhoneNumber(buy("+14155550123"))
	g.Expect(restError(err)).To(HaveField("Code", 21422), "a blind retry cannot buy it twice")
	found, err := rc.Api.ListIncomingPhoneNumber((&openapi.ListIncomingPhoneNumberParams{}).SetPhoneNumber("+14155550123"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(found).To(HaveLen(1), "looking the number up finds the lost purchase")
}

// Concurrent purchases of one number: exactly one succeeds.
func TestConcurrentPurchasesBuyOnce(t *testing.T) {
	g := NewWithT(t)
	s, base := startSim(t)
	s.AddAvailable(AvailableNumber{PhoneNumber: "+14155550123"})
	rc := newTwilio(t, base, testAccount, testToken, testAccount)

	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() { _, errs[i] = rc.Api.CreateIncomingPhoneNumber(buy("+14155550123")) })
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		if err == nil {
			ok++
			continue
		}
		g.Expect(restError(err)).To(HaveField("Code", 21422))
	}
	g.Expect(ok).To(Equal(1))
	g.Expect(s.CountRequests(KindCreateNumber)).To(Equal(8))
}

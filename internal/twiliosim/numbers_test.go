package twiliosim

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	openapi "github.com/twilio/twilio-go/rest/api/v2010"
)

func phoneNumbers(nums []openapi.ApiV2010IncomingPhoneNumber) []string {
	out := make([]string, 0, len(nums))
	for _, n := range nums {
		out = append(out, *n.PhoneNumber)
	}
	return out
}

func mustNumber(t *testing.T, s *Server, sid string) Number {
	t.Helper()
	n, ok := s.Number(sid)
	if !ok {
		t.Fatalf("number %s not found", sid)
	}
	return n
}

func TestListFilters(t *testing.T) {
	g := NewWithT(t)
	s, base := startSim(t)
	a := s.AddNumber(Number{PhoneNumber: "+14155550100", VoiceURL: "https://old.example.com/voice"})
	s.AddNumber(Number{PhoneNumber: "+14155550101", FriendlyName: "support line"})
	s.AddNumber(Number{PhoneNumber: "+14155550200"})
	s.AddNumber(Number{PhoneNumber: "+442071234567"})
	s.AddNumber(Number{AccountSID: otherAcct, PhoneNumber: "+14155550109"})
	rc := newTwilio(t, base, testAccount, testToken, testAccount)

	list := func(p *openapi.ListIncomingPhoneNumberParams) []string {
		nums, err := rc.Api.ListIncomingPhoneNumber(p)
		g.Expect(err).NotTo(HaveOccurred())
		return phoneNumbers(nums)
	}

	g.Expect(list(nil)).To(Equal([]string{"+14155550100", "+14155550101", "+14155550200", "+442071234567"}))

	exact, err := rc.Api.ListIncomingPhoneNumber((&openapi.ListIncomingPhoneNumberParams{}).SetPhoneNumber("+14155550100"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(exact).To(HaveLen(1))
	g.Expect(exact[0].Sid).To(Equal(ptr(a.SID)))
	g.Expect(exact[0].VoiceUrl).To(Equal(ptr("https://old.example.com/voice")))
	g.Expect(exact[0].FriendlyName).To(Equal(ptr("(415) 555-0100")))
	last := s.Requests()[len(s.Requests())-1]
	g.Expect(last.Query.Get("PhoneNumber")).To(Equal("+14155550100"))

	g.Expect(list((&openapi.ListIncomingPhoneNumberParams{}).SetPhoneNumber("+1415555010*"))).
		To(Equal([]string{"+14155550100", "+14155550101"}))
	g.Expect(list((&openapi.ListIncomingPhoneNumberParams{}).SetPhoneNumber("+1415555****"))).
		To(Equal([]string{"+14155550100", "+14155550101", "+14155550200"}))
	g.Expect(list((&openapi.ListIncomingPhoneNumberParams{}).SetPhoneNumber("+14155550999"))).To(BeEmpty())
	g.Expect(list((&openapi.ListIncomingPhoneNumberParams{}).SetFriendlyName("support line"))).
		To(Equal([]string{"+14155550101"}))
	g.Expect(list((&openapi.ListIncomingPhoneNumberParams{}).SetFriendlyName("support"))).To(BeEmpty())
	g.Expect(list((&openapi.ListIncomingPhoneNumberParams{}).SetFriendlyName("+442071234567"))).
		To(Equal([]string{"+442071234567"}))
}

func TestListPages2500NumbersInThreeRequests(t *testing.T) {
	g := NewWithT(t)
	s, base := startSim(t)
	var want []string
	for i := range 2500 {
		want = append(want, s.AddNumber(Number{PhoneNumber: fmt.Sprintf("+1415%07d", i)}).SID)
	}
	rc := newTwilio(t, base, testAccount, testToken, testAccount)

	nums, err := rc.Api.ListIncomingPhoneNumber((&openapi.ListIncomingPhoneNumberParams{}).SetPageSize(1000))
	g.Expect(err).NotTo(HaveOccurred())
	got := make([]string, 0, len(nums))
	for _, n := range nums {
		got = append(got, *n.Sid)
	}
	g.Expect(got).To(Equal(want))
	g.Expect(s.CountRequests(KindListNumbers)).To(Equal(3))

	reqs := s.Requests()
	g.Expect(reqs[0].Query.Get("PageSize")).To(Equal("1000"))
	g.Expect(reqs[0].Query.Has("PageToken")).To(BeFalse())
	g.Expect(reqs[1].Query.Get("Page")).To(Equal("1"))
	g.Expect(reqs[1].Query.Get("PageToken")).To(Equal("PA" + want[999]))
	g.Expect(reqs[2].Query.Get("Page")).To(Equal("2"))
	g.Expect(reqs[2].Query.Get("PageToken")).To(Equal("PA" + want[1999]))
}

func TestListEnvelope(t *testing.T) {
	g := NewWithT(t)
	s, base := startSim(t)
	for i := range 5 {
		s.AddNumber(Number{PhoneNumber: fmt.Sprintf("+1415555010%d", i)})
	}
	s.AddNumber(Number{PhoneNumber: "+14155550200"})
	rc := newTwilio(t, base, testAccount, testToken, testAccount)
	p := (&openapi.ListIncomingPhoneNumberParams{}).SetPhoneNumber("+1415555010*").SetPageSize(2)
	listPath := "/2010-04-01/Accounts/" + testAccount + "/IncomingPhoneNumbers.json"

	first, err := rc.Api.PageIncomingPhoneNumber(p, "", "")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(first.Page).To(Equal(0))
	g.Expect(first.PageSize).To(Equal(2))
	g.Expect(first.Start).To(Equal(0))
	g.Expect(first.End).To(Equal(1))
	g.Expect(first.PreviousPageUri).To(BeNil())
	g.Expect(first.FirstPageUri).To(Equal(listPath + "?PhoneNumber=%2B1415555010%2A&PageSize=2&Page=0"))
	g.Expect(first.Uri).To(Equal(first.FirstPageUri))
	g.Expect(first.NextPageUri).NotTo(BeNil())
	g.Expect(*first.NextPageUri).To(Equal(listPath + "?PhoneNumber=%2B1415555010%2A&PageSize=2&Page=1&PageToken=PA" +
		*first.IncomingPhoneNumbers[1].Sid))

	// Following next_page_uri keeps the filter: 5 matches at 2 per page.
	s.ResetRequests()
	nums, err := rc.Api.ListIncomingPhoneNumber(p)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(nums).To(HaveLen(5))
	reqs := s.Requests()
	g.Expect(reqs).To(HaveLen(3))
	for _, r := range reqs {
		g.Expect(r.Query.Get("PhoneNumber")).To(Equal("+1415555010*"))
	}

	// The last page links back with a PB token, and that link works.
	third, err := rc.Api.PageIncomingPhoneNumber(p, "PA"+*nums[3].Sid, "2")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(phoneNumbers(third.IncomingPhoneNumbers)).To(Equal([]string{"+14155550104"}))
	g.Expect(third.NextPageUri).To(BeNil())
	g.Expect(third.Start).To(Equal(4))
	g.Expect(third.PreviousPageUri).NotTo(BeNil())
	status, _, body := rawDo(t, http.MethodGet, base+*third.PreviousPageUri, testAccount, testToken, "")
	g.Expect(status).To(Equal(200))
	g.Expect(body).To(ContainSubstring(`"phone_number":"+14155550102"`))
	g.Expect(body).To(ContainSubstring(`"phone_number":"+14155550103"`))
	g.Expect(body).NotTo(ContainSubstring(`"phone_number":"+14155550104"`))
}

func TestListRejectsBadPaging(t *testing.T) {
	g := NewWithT(t)
	_, base := startSim(t)
	rc := newTwilio(t, base, testAccount, testToken, testAccount)

	_, err := rc.Api.PageIncomingPhoneNumber((&openapi.ListIncomingPhoneNumberParams{}).SetPageSize(1001), "", "")
	g.Expect(restError(err)).To(HaveField("Status", 400))
	_, err = rc.Api.PageIncomingPhoneNumber((&openapi.ListIncomingPhoneNumberParams{}).SetPageSize(10), "", "3")
	g.Expect(restError(err)).To(HaveField("Code", 70002))
	_, err = rc.Api.PageIncomingPhoneNumber(&openapi.ListIncomingPhoneNumberParams{}, "PAnope", "1")
	g.Expect(restError(err)).To(HaveField("Code", 70002))
}

func TestNumberJSONOnTheWire(t *testing.T) {
	g := NewWithT(t)
	s, base := startSim(t)
	n := s.AddNumber(Number{PhoneNumber: "+14155550100"})

	status, h, body := rawDo(t, http.MethodGet, base+numberURI(testAccount, n.SID), testAccount, testToken, "")
	g.Expect(status).To(Equal(200))
	g.Expect(h.Get("Content-Type")).To(Equal("application/json"))
	for _, want := range []string{
		`"sid":"` + n.SID + `"`, `"account_sid":"` + testAccount + `"`, `"phone_number":"+14155550100"`,
		`"friendly_name":"(415) 555-0100"`, `"voice_url":null`, `"voice_method":"POST"`,
		`"voice_fallback_url":null`, `"voice_fallback_method":"POST"`, `"status_callback":""`,
		`"status_callback_method":"POST"`, `"voice_application_sid":""`, `"trunk_sid":null`,
		`"capabilities":{"voice":true,"sms":true,"mms":true,"fax":false}`, `"status":"in-use"`,
		`"api_version":"2010-04-01"`, `"beta":false`, `"origin":"twilio"`, `"voice_receive_mode":"voice"`,
		`"uri":"` + numberURI(testAccount, n.SID) + `"`,
	} {
		g.Expect(body).To(ContainSubstring(want))
	}
	g.Expect(body).To(MatchRegexp(`"date_created":"[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} \+0000"`))

	// twilio-go decodes null as nil and "" as a pointer to "".
	rc := newTwilio(t, base, testAccount, testToken, testAccount)
	got, err := rc.Api.FetchIncomingPhoneNumber(n.SID, &openapi.FetchIncomingPhoneNumberParams{})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got.VoiceUrl).To(BeNil())
	g.Expect(got.TrunkSid).To(BeNil())
	g.Expect(got.VoiceApplicationSid).To(Equal(ptr("")))
	g.Expect(got.Capabilities.Voice).To(BeTrue())
	_, err = time.Parse(time.RFC1123Z, *got.DateUpdated)
	g.Expect(err).NotTo(HaveOccurred())
}

func TestFetchNumber(t *testing.T) {
	g := NewWithT(t)
	s, base := startSim(t)
	n := s.AddNumber(Number{PhoneNumber: "+14155550100", VoiceURL: "https://old.example.com/voice", VoiceMethod: "get",
		StatusCallback: "https://cb.example.com/status", TrunkSID: "TK0123"})
	rc := newTwilio(t, base, testAccount, testToken, testAccount)

	got, err := rc.Api.FetchIncomingPhoneNumber(n.SID, nil)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got.Sid).To(Equal(ptr(n.SID)))
	g.Expect(got.PhoneNumber).To(Equal(ptr("+14155550100")))
	g.Expect(got.VoiceUrl).To(Equal(ptr("https://old.example.com/voice")))
	g.Expect(got.VoiceMethod).To(Equal(ptr("GET")))
	g.Expect(got.StatusCallback).To(Equal(ptr("https://cb.example.com/status")))
	g.Expect(got.TrunkSid).To(Equal(ptr("TK0123")))
	g.Expect(s.Requests()[0]).To(And(HaveField("Kind", KindFetchNumber), HaveField("NumberSID", n.SID)))
}

func TestUnknownNumberIs404(t *testing.T) {
	g := NewWithT(t)
	s, base := startSim(t)
	foreign := s.AddNumber(Number{AccountSID: otherAcct, PhoneNumber: "+14155550109"})
	rc := newTwilio(t, base, testAccount, testToken, testAccount)

	missing := "PN00000000000000000000000000000000"
	_, err := rc.Api.FetchIncomingPhoneNumber(missing, nil)
	tre := restError(err)
	g.Expect(tre).NotTo(BeNil(), "error %v", err)
	g.Expect(tre.Status).To(Equal(404))
	g.Expect(tre.Code).To(Equal(20404))
	g.Expect(tre.Message).To(Equal("The requested resource /2010-04-01/Accounts/" + testAccount +
		"/IncomingPhoneNumbers/" + missing + ".json was not found"))
	g.Expect(tre.MoreInfo).To(Equal("https://www.twilio.com/docs/errors/20404"))

	// Another account's number is not found either, for fetch and update.
	_, err = rc.Api.FetchIncomingPhoneNumber(foreign.SID, nil)
	g.Expect(restError(err)).To(HaveField("Code", 20404))
	_, err = rc.Api.UpdateIncomingPhoneNumber(foreign.SID, (&openapi.UpdateIncomingPhoneNumberParams{}).SetVoiceUrl("https://x.example.com"))
	g.Expect(restError(err)).To(HaveField("Code", 20404))
	g.Expect(mustNumber(t, s, foreign.SID).VoiceURL).To(BeEmpty())
}

func TestUpdateSetsVoiceURL(t *testing.T) {
	g := NewWithT(t)
	s, base := startSim(t)
	n := s.AddNumber(Number{PhoneNumber: "+14155550100", VoiceURL: "https://old.example.com/voice",
		DateUpdated: time.Date(2015, 7, 30, 23, 19, 4, 0, time.UTC)})
	rc := newTwilio(t, base, testAccount, testToken, testAccount)

	got, err := rc.Api.UpdateIncomingPhoneNumber(n.SID, (&openapi.UpdateIncomingPhoneNumberParams{}).
		SetVoiceUrl("https://new.example.com/voice").SetVoiceMethod("post").SetStatusCallback("https://new.example.com/status"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got.VoiceUrl).To(Equal(ptr("https://new.example.com/voice")))
	g.Expect(got.VoiceMethod).To(Equal(ptr("POST")))
	g.Expect(got.DateUpdated).NotTo(Equal(ptr("Thu, 30 Jul 2015 23:19:04 +0000")))

	stored, ok := s.Number(n.SID)
	g.Expect(ok).To(BeTrue())
	g.Expect(stored.VoiceURL).To(Equal("https://new.example.com/voice"))
	g.Expect(stored.StatusCallback).To(Equal("https://new.example.com/status"))
	g.Expect(stored.VoiceFallbackURL).To(BeEmpty())
	g.Expect(stored.DateUpdated.After(n.DateUpdated)).To(BeTrue())
	url, method, owner, ok := s.EffectiveVoiceURL("+14155550100")
	g.Expect([]any{url, method, owner, ok}).To(Equal([]any{"https://new.example.com/voice", "POST", testAccount, true}))
}

func TestUpdateWithEmptyVoiceURLClearsIt(t *testing.T) {
	g := NewWithT(t)
	s, base := startSim(t)
	n := s.AddNumber(Number{PhoneNumber: "+14155550100", VoiceURL: "https://old.example.com/voice",
		VoiceFallbackURL: "https://fallback.example.com/voice"})
	rc := newTwilio(t, base, testAccount, testToken, testAccount)

	got, err := rc.Api.UpdateIncomingPhoneNumber(n.SID, (&openapi.UpdateIncomingPhoneNumberParams{}).SetVoiceUrl(""))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got.VoiceUrl).To(BeNil())
	g.Expect(got.VoiceFallbackUrl).To(Equal(ptr("https://fallback.example.com/voice")))

	g.Expect(mustNumber(t, s, n.SID).VoiceURL).To(BeEmpty())
	form := s.Requests()[0].Form
	g.Expect(form).To(HaveKeyWithValue("VoiceUrl", []string{""}))
	_, _, _, ok := s.EffectiveVoiceURL("+14155550100")
	g.Expect(ok).To(BeTrue())
}

func TestApplicationAndTrunkAreMutuallyExclusive(t *testing.T) {
	g := NewWithT(t)
	s, base := startSim(t)
	n := s.AddNumber(Number{PhoneNumber: "+14155550100", TrunkSID: "TKaaaa"})
	rc := newTwilio(t, base, testAccount, testToken, testAccount)

	got, err := rc.Api.UpdateIncomingPhoneNumber(n.SID, (&openapi.UpdateIncomingPhoneNumberParams{}).SetVoiceApplicationSid("APbbbb"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got.VoiceApplicationSid).To(Equal(ptr("APbbbb")))
	g.Expect(got.TrunkSid).To(BeNil())

	got, err = rc.Api.UpdateIncomingPhoneNumber(n.SID, (&openapi.UpdateIncomingPhoneNumberParams{}).SetTrunkSid("TKcccc"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got.TrunkSid).To(Equal(ptr("TKcccc")))
	g.Expect(got.VoiceApplicationSid).To(Equal(ptr("")))

	_, err = rc.Api.UpdateIncomingPhoneNumber(n.SID, (&openapi.UpdateIncomingPhoneNumberParams{}).
		SetTrunkSid("TKdddd").SetVoiceApplicationSid("APeeee").SetVoiceUrl("https://new.example.com"))
	g.Expect(restError(err)).To(And(HaveField("Status", 400), HaveField("Code", 70002)))
	stored, _ := s.Number(n.SID)
	g.Expect(stored.TrunkSID).To(Equal("TKcccc"))
	g.Expect(stored.VoiceApplicationSID).To(BeEmpty())
	g.Expect(stored.VoiceURL).To(BeEmpty(), "a rejected update applies nothing")

	// An empty TrunkSid detaches the trunk without touching anything else.
	got, err = rc.Api.UpdateIncomingPhoneNumber(n.SID, (&openapi.UpdateIncomingPhoneNumberParams{}).SetTrunkSid(""))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got.TrunkSid).To(BeNil())
}

func TestVoiceURLDoesNotDetachApplication(t *testing.T) {
	g := NewWithT(t)
	s, base := startSim(t)
	n := s.AddNumber(Number{PhoneNumber: "+14155550100", VoiceApplicationSID: "AP1234"})
	rc := newTwilio(t, base, testAccount, testToken, testAccount)

	got, err := rc.Api.UpdateIncomingPhoneNumber(n.SID, (&openapi.UpdateIncomingPhoneNumberParams{}).SetVoiceUrl("https://new.example.com/voice"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got.VoiceUrl).To(Equal(ptr("https://new.example.com/voice")))
	g.Expect(got.VoiceApplicationSid).To(Equal(ptr("AP1234")))

	url, method, owner, ok := s.EffectiveVoiceURL("+14155550100")
	g.Expect(ok).To(BeTrue())
	g.Expect(url).To(BeEmpty(), "the application takes precedence")
	g.Expect(method).To(BeEmpty())
	g.Expect(owner).To(Equal(testAccount))

	_, err = rc.Api.UpdateIncomingPhoneNumber(n.SID, (&openapi.UpdateIncomingPhoneNumberParams{}).SetVoiceApplicationSid(""))
	g.Expect(err).NotTo(HaveOccurred())
	url, _, _, _ = s.EffectiveVoiceURL("+14155550100")
	g.Expect(url).To(Equal("https://new.example.com/voice"))
}

func TestUpdateRejectsInvalidValues(t *testing.T) {
	g := NewWithT(t)
	s, base := startSim(t)
	n := s.AddNumber(Number{PhoneNumber: "+14155550100", VoiceURL: "https://old.example.com/voice"})
	rc := newTwilio(t, base, testAccount, testToken, testAccount)
	update := func(p *openapi.UpdateIncomingPhoneNumberParams) (int, int) {
		_, err := rc.Api.UpdateIncomingPhoneNumber(n.SID, p)
		tre := restError(err)
		g.Expect(tre).NotTo(BeNil(), "error %v", err)
		return tre.Status, tre.Code
	}

	status, code := update((&openapi.UpdateIncomingPhoneNumberParams{}).SetVoiceUrl("not a url"))
	g.Expect(status).To(Equal(400))
	g.Expect(code).To(Equal(21502))
	_, code = update((&openapi.UpdateIncomingPhoneNumberParams{}).SetVoiceUrl("ftp://files.example.com/x"))
	g.Expect(code).To(Equal(21502))
	_, code = update((&openapi.UpdateIncomingPhoneNumberParams{}).SetVoiceUrl("https://ok.example.com").SetStatusCallback("/relative"))
	g.Expect(code).To(Equal(21502))
	_, code = update((&openapi.UpdateIncomingPhoneNumberParams{}).SetVoiceMethod("PUT"))
	g.Expect(code).To(Equal(70002))
	_, code = update((&openapi.UpdateIncomingPhoneNumberParams{}).SetFriendlyName(strings.Repeat("x", 65)))
	g.Expect(code).To(Equal(20002))
	_, code = update((&openapi.UpdateIncomingPhoneNumberParams{}).SetAccountSid("AC99999999999999999999999999999999"))
	g.Expect(code).To(Equal(70002))

	stored, _ := s.Number(n.SID)
	g.Expect(stored).To(Equal(n), "rejected updates change nothing")
}

func TestUpdateAccountSidTransfersTheNumber(t *testing.T) {
	g := NewWithT(t)
	s, base := startSim(t)
	n := s.AddNumber(Number{PhoneNumber: "+14155550100"})
	rc := newTwilio(t, base, testAccount, testToken, testAccount)

	got, err := rc.Api.UpdateIncomingPhoneNumber(n.SID, (&openapi.UpdateIncomingPhoneNumberParams{}).SetAccountSid(otherAcct))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got.AccountSid).To(Equal(ptr(otherAcct)))
	g.Expect(got.Uri).To(Equal(ptr(numberURI(otherAcct, n.SID))))
	g.Expect(mustNumber(t, s, n.SID).AccountSID).To(Equal(otherAcct))

	_, err = rc.Api.FetchIncomingPhoneNumber(n.SID, nil)
	g.Expect(restError(err)).To(HaveField("Code", 20404))
	g.Expect(s.Requests()[0].Form.Get("AccountSid")).To(Equal(otherAcct))
}

func TestDeleteAndCreateAreLogged(t *testing.T) {
	g := NewWithT(t)
	s, base := startSim(t)
	n := s.AddNumber(Number{PhoneNumber: "+14155550100"})
	rc := newTwilio(t, base, testAccount, testToken, testAccount)

	_, err := rc.Api.CreateIncomingPhoneNumber((&openapi.CreateIncomingPhoneNumberParams{}).SetPhoneNumber("+14155550111"))
	g.Expect(restError(err)).To(And(HaveField("Status", 400), HaveField("Code", 21422))) // not on sale
	g.Expect(s.CountRequests(KindCreateNumber)).To(Equal(1))
	_, exists := s.NumberByPhone("+14155550111")
	g.Expect(exists).To(BeFalse())

	g.Expect(rc.Api.DeleteIncomingPhoneNumber(n.SID, nil)).To(Succeed())
	_, exists = s.Number(n.SID)
	g.Expect(exists).To(BeFalse())
	reqs := s.Requests()
	g.Expect(reqs[1]).To(And(HaveField("Kind", KindDeleteNumber), HaveField("NumberSID", n.SID), HaveField("Status", 204)))
	g.Expect(rc.Api.DeleteIncomingPhoneNumber(n.SID, nil)).To(MatchError(ContainSubstring("20404")))
}

func TestOutOfBandUpdate(t *testing.T) {
	g := NewWithT(t)
	s, base := startSim(t)
	n := s.AddNumber(Number{PhoneNumber: "+14155550100", VoiceURL: "https://ours.example.com/voice"})
	g.Expect(s.UpdateNumber(n.SID, func(n *Number) { n.VoiceURL = "https://console.example.com/voice" })).To(BeTrue())
	g.Expect(s.UpdateNumber("PNmissing", func(*Number) {})).To(BeFalse())
	stored, _ := s.NumberByPhone("+14155550100")
	g.Expect(stored.DateUpdated.After(n.DateUpdated)).To(BeTrue())

	rc := newTwilio(t, base, testAccount, testToken, testAccount)
	got, err := rc.Api.FetchIncomingPhoneNumber(n.SID, nil)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got.VoiceUrl).To(Equal(ptr("https://console.example.com/voice")))
}

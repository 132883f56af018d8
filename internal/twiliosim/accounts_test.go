package twiliosim

import (
	"net/http"
	"testing"

	. "github.com/onsi/gomega"
	openapi "github.com/twilio/twilio-go/rest/api/v2010"
)

func TestFetchAccountWithAuthToken(t *testing.T) {
	g := NewWithT(t)
	s, base := startSim(t)
	rc := newTwilio(t, base, testAccount, testToken, testAccount)

	a, err := rc.Api.FetchAccount(testAccount)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(a.Sid).To(Equal(ptr(testAccount)))
	g.Expect(a.FriendlyName).To(Equal(ptr("Emulated account")))
	g.Expect(a.Type).To(Equal(ptr("Full")))
	g.Expect(a.Status).To(Equal(ptr("active")))
	g.Expect(a.OwnerAccountSid).To(Equal(ptr(testAccount)))
	g.Expect(a.Uri).To(Equal(ptr("/2010-04-01/Accounts/" + testAccount + ".json")))
	g.Expect(a.DateCreated).NotTo(BeNil())

	reqs := s.Requests()
	g.Expect(reqs).To(HaveLen(1))
	g.Expect(reqs[0].Kind).To(Equal(KindFetchAccount))
	g.Expect(reqs[0].AccountSID).To(Equal(testAccount))
	g.Expect(reqs[0].AuthUser).To(Equal(testAccount))
	g.Expect(reqs[0].Status).To(Equal(http.StatusOK))
}

func TestFetchAccountWithAPIKey(t *testing.T) {
	g := NewWithT(t)
	s, base := startSim(t)
	rc := newTwilio(t, base, testKey, testSecret, testAccount)

	a, err := rc.Api.FetchAccount(testAccount)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(a.Sid).To(Equal(ptr(testAccount)))
	g.Expect(s.Requests()[0].AuthUser).To(Equal(testKey))

	// The key belongs to testAccount only.
	_, err = rc.Api.FetchAccount(otherAcct)
	tre := restError(err)
	g.Expect(tre).NotTo(BeNil(), "error %v", err)
	g.Expect(tre.Status).To(Equal(http.StatusUnauthorized))
	g.Expect(tre.Code).To(Equal(20003))
}

func TestWrongTokenIs401(t *testing.T) {
	g := NewWithT(t)
	s, base := startSim(t)
	rc := newTwilio(t, base, testAccount, "wrongToken", testAccount)

	_, err := rc.Api.FetchAccount(testAccount)
	tre := restError(err)
	g.Expect(tre).NotTo(BeNil(), "error %v", err)
	g.Expect(tre.Status).To(Equal(401))
	g.Expect(tre.Code).To(Equal(20003))
	g.Expect(tre.Message).To(Equal("Authenticate"))
	g.Expect(tre.MoreInfo).To(Equal("https://www.twilio.com/docs/errors/20003"))

	_, err = rc.Api.ListIncomingPhoneNumber(&openapi.ListIncomingPhoneNumberParams{})
	g.Expect(restError(err)).To(HaveField("Code", 20003))

	reqs := s.Requests()
	g.Expect(reqs).To(HaveLen(2))
	g.Expect(reqs[0].Status).To(Equal(401))
	g.Expect(reqs[0].ErrorCode).To(Equal(20003))
	g.Expect(reqs[1].Kind).To(Equal(KindListNumbers))
}

func TestSuspendedAccountCannotAuthenticate(t *testing.T) {
	g := NewWithT(t)
	s, base := startSim(t)
	s.AddAccount(Account{SID: testAccount, AuthToken: testToken, Status: "suspended"})
	rc := newTwilio(t, base, testAccount, testToken, testAccount)

	_, err := rc.Api.FetchAccount(testAccount)
	g.Expect(restError(err)).To(HaveField("Status", 401))
}

func TestParentMayActOnSubaccountButNotTheReverse(t *testing.T) {
	g := NewWithT(t)
	s, base := startSim(t)
	sub := s.AddAccount(Account{OwnerAccountSID: testAccount, FriendlyName: "sub"})
	n := s.AddNumber(Number{AccountSID: sub.SID, PhoneNumber: "+14155550100"})

	parent := newTwilio(t, base, testAccount, testToken, sub.SID)
	got, err := parent.Api.FetchIncomingPhoneNumber(n.SID, nil)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got.AccountSid).To(Equal(ptr(sub.SID)))

	a, err := parent.Api.FetchAccount(sub.SID)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(a.OwnerAccountSid).To(Equal(ptr(testAccount)))

	child := newTwilio(t, base, sub.SID, sub.AuthToken, testAccount)
	_, err = child.Api.FetchAccount(testAccount)
	g.Expect(restError(err)).To(HaveField("Code", 20003))
}

func TestRawErrorsAreTwilioJSON(t *testing.T) {
	g := NewWithT(t)
	_, base := startSim(t)

	status, h, body := rawDo(t, http.MethodGet, base+"/2010-04-01/Accounts/"+testAccount+".json", "", "", "")
	g.Expect(status).To(Equal(401))
	g.Expect(h.Get("Content-Type")).To(Equal("application/json"))
	g.Expect(body).To(MatchJSON(`{"code":20003,"detail":"Your AccountSid or AuthToken was incorrect.","message":"Authenticate","more_info":"https://www.twilio.com/docs/errors/20003","status":401}`))

	status, h, body = rawDo(t, http.MethodGet, base+"/2010-04-01/Accounts/"+testAccount+"/Calls.json", testAccount, testToken, "")
	g.Expect(status).To(Equal(404))
	g.Expect(h.Get("Content-Type")).To(Equal("application/json"))
	g.Expect(body).To(MatchJSON(`{"code":20404,"message":"The requested resource /2010-04-01/Accounts/` + testAccount + `/Calls.json was not found","more_info":"https://www.twilio.com/docs/errors/20404","status":404}`))

	status, _, body = rawDo(t, http.MethodPut, base+"/2010-04-01/Accounts/"+testAccount+"/IncomingPhoneNumbers.json", testAccount, testToken, "")
	g.Expect(status).To(Equal(405))
	g.Expect(body).To(ContainSubstring(`"code":20004`))
}

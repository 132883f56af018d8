package main

import (
	"context"
	"fmt"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	twiliov1 "github.com/loquent/twilio-voice-operator/api/v1alpha1"
	"github.com/loquent/twilio-voice-operator/internal/twiliosim"
)

// benchAccount is one emulated Twilio account and the namespace that holds
// its credentials Secret, its TwilioAccount and its share of the numbers, as
// a platform running one tenant per namespace would lay it out.
type benchAccount struct {
	sid       string // AC + 32 hex digits
	authToken string
	namespace string
	first     int // index of its first number
	count     int // numbers [first, first+count)
}

// fleet spreads n numbers evenly over k accounts: contiguous blocks whose
// sizes differ by at most one. With k == 1 it is the original benchmark's
// layout (account AC…01, token benchToken), in namespace bench-00.
func fleet(n, k int) []benchAccount {
	accts := make([]benchAccount, k)
	for a := range k {
		first, next := a*n/k, (a+1)*n/k
		token := "benchToken"
		if a > 0 {
			token = fmt.Sprintf("benchToken%02d", a)
		}
		accts[a] = benchAccount{
			sid:       fmt.Sprintf("AC%032x", a+1),
			authToken: token,
			namespace: fmt.Sprintf("bench-%02d", a),
			first:     first,
			count:     next - first,
		}
	}
	return accts
}

// addToEmulator adds every account, and its numbers pointed elsewhere, to sim.
func addToEmulator(sim *twiliosim.Server, accts []benchAccount) {
	for _, a := range accts {
		sim.AddAccount(twiliosim.Account{SID: a.sid, AuthToken: a.authToken})
		for i := a.first; i < a.first+a.count; i++ {
			sim.AddNumber(twiliosim.Number{AccountSID: a.sid, PhoneNumber: e164(i), VoiceURL: fmt.Sprintf("https://old.example.com/voice/%d", i)})
		}
	}
}

// createAccounts creates, per account, its namespace, credentials Secret and
// TwilioAccount (named main, budget maxConcurrent, Twilio at apiURL).
func createAccounts(ctx context.Context, k8s client.Client, accts []benchAccount, apiURL string, maxConcurrent int) error {
	for _, a := range accts {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: a.namespace}}
		secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: a.namespace, Name: "twilio"}, StringData: map[string]string{"authToken": a.authToken}}
		acct := &twiliov1.TwilioAccount{
			ObjectMeta: metav1.ObjectMeta{Namespace: a.namespace, Name: "main"},
			Spec: twiliov1.TwilioAccountSpec{AccountSID: a.sid, CredentialsSecretRef: twiliov1.SecretReference{Name: "twilio"},
				APIURL: apiURL, MaxConcurrentRequests: int32(maxConcurrent)},
		}
		for _, obj := range []client.Object{ns, secret, acct} {
			if err := k8s.Create(ctx, obj); err != nil {
				return err
			}
		}
	}
	return nil
}

// createNumbers creates every account's TwilioPhoneNumbers in its namespace,
// 16 at a time.
func createNumbers(ctx context.Context, k8s client.Client, accts []benchAccount) error {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	sem := make(chan struct{}, 16)
	for _, a := range accts {
		for i := a.first; i < a.first+a.count; i++ {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				obj := &twiliov1.TwilioPhoneNumber{
					ObjectMeta: metav1.ObjectMeta{Namespace: a.namespace, Name: fmt.Sprintf("n%05d", i)},
					Spec: twiliov1.TwilioPhoneNumberSpec{AccountRef: twiliov1.LocalObjectReference{Name: "main"}, PhoneNumber: e164(i),
						Agent: &twiliov1.AgentSpec{URL: "ws://agent.agents.svc:8080/media"}},
				}
				if err := k8s.Create(ctx, obj); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	return firstErr
}

// e164 is number i's phone number: +1 650 555-0000 up to +1 650 555-9999,
// then the next exchanges (556, …), so every index up to millions has its
// own valid number.
func e164(i int) string { return fmt.Sprintf("+1650%03d%04d", 555+i/10000, i%10000) }

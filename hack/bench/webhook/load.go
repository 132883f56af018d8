package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/loquent/twilio-voice-operator/hack/bench/internal/cpu"

	"github.com/loquent/twilio-voice-operator/internal/twiliosim/callsim"
	"github.com/loquent/twilio-voice-operator/webhookserver"
)

// result is one server's measured load.
type result struct {
	name      string
	ok        int
	errors    int
	firstErr  string
	elapsed   time.Duration
	cpu       time.Duration   // this process's CPU (client and server) meanwhile
	busy      uint64          // whole-machine busy clock ticks meanwhile
	ticks     uint64          // whole-machine clock ticks meanwhile
	latencies []time.Duration // successful requests only
}

// merge adds o's requests to r.
func (r result) merge(o result) result {
	if r.firstErr == "" {
		r.firstErr = o.firstErr
	}
	r.name = o.name
	r.ok += o.ok
	r.errors += o.errors
	r.elapsed += o.elapsed
	r.cpu += o.cpu
	r.busy += o.busy
	r.ticks += o.ticks
	r.latencies = append(r.latencies, o.latencies...)
	return r
}

var callSeq atomic.Int64

// voiceRequest builds a signed inbound-call webhook with a fresh CallSid,
// exactly as Twilio would send it to publicURL.
func voiceRequest(t target, i int64) (*http.Request, error) {
	form := url.Values{
		"AccountSid": {accountSID}, "CallSid": {fmt.Sprintf("CA%032x", callSeq.Add(1))},
		"From": {"+15550000001"}, "To": {number(int(i % int64(t.numbers)))},
		"CallStatus": {"ringing"}, "Direction": {"inbound"}, "ApiVersion": {"2010-04-01"},
	}
	req, err := http.NewRequest(http.MethodPost, t.url, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set(callsim.SignatureHeader, callsim.Sign(authToken, publicURL+webhookserver.VoicePath, form))
	return req, nil
}

var streamTag = []byte("<Stream")

// do sends one request and checks the answer is a routed call's TwiML.
func do(client *http.Client, req *http.Request, buf *bytes.Buffer) error {
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	buf.Reset()
	_, err = io.Copy(buf, resp.Body)
	_ = resp.Body.Close()
	switch {
	case err != nil:
		return err
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("status %d", resp.StatusCode)
	case !bytes.Contains(buf.Bytes(), streamTag):
		return fmt.Errorf("answer is not a <Connect><Stream>: %.200s", buf.String())
	}
	return nil
}

// newClient is the load generator's client: one keep-alive connection per worker.
func newClient(workers int) *http.Client {
	tr := &http.Transport{MaxIdleConnsPerHost: workers, MaxConnsPerHost: workers, DisableCompression: true}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// runLoad drives t with workers concurrent clients until d has passed or
// maxRequests were sent, whichever is first. Latency is from sending the
// (already signed) request to having read the whole answer.
func runLoad(t target, client *http.Client, workers int, d time.Duration, maxRequests int) result {
	if maxRequests <= 0 {
		return result{name: t.name}
	}
	var issued, errCount atomic.Int64
	var firstErr atomic.Value
	perWorker := make([][]time.Duration, workers)
	busy0, ticks0 := cpu.Machine()
	cpu0 := cpu.Process()
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat := make([]time.Duration, 0, 4096)
			var buf bytes.Buffer
			for time.Now().Before(deadline) {
				i := issued.Add(1)
				if i > int64(maxRequests) {
					break
				}
				req, err := voiceRequest(t, i)
				if err != nil {
					errCount.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					break
				}
				began := time.Now()
				if err := do(client, req, &buf); err != nil {
					errCount.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				lat = append(lat, time.Since(began))
			}
			perWorker[w] = lat
		}()
	}
	wg.Wait()
	r := result{name: t.name, errors: int(errCount.Load()), elapsed: time.Since(start), cpu: cpu.Process() - cpu0}
	busy1, ticks1 := cpu.Machine()
	r.busy, r.ticks = busy1-busy0, ticks1-ticks0
	if s, ok := firstErr.Load().(string); ok {
		r.firstErr = s
	}
	for _, l := range perWorker {
		r.latencies = append(r.latencies, l...)
	}
	r.ok = len(r.latencies)
	return r
}

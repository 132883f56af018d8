package sampleagent

import (
	"encoding/json"
	"net/http"
)

// MaxDigits bounds Stats.Digits; older digits are dropped first.
const MaxDigits = 256

// Stats is a snapshot of everything the agent has seen since it was created.
// Counters only grow, except ActiveCalls.
type Stats struct {
	Calls          int64  `json:"calls"`          // streams that sent start
	ActiveCalls    int64  `json:"activeCalls"`    // streams started and not yet ended
	CompletedCalls int64  `json:"completedCalls"` // streams that ended with stop
	LastFrom       string `json:"lastFrom"`       // customParameters "from" of the latest start
	LastTo         string `json:"lastTo"`         // customParameters "to" of the latest start
	LastCallSID    string `json:"lastCallSid"`
	LastStreamSID  string `json:"lastStreamSid"`
	FramesIn       int64  `json:"framesIn"`  // caller media frames received
	FramesOut      int64  `json:"framesOut"` // media frames sent (echoes)
	MarksSent      int64  `json:"marksSent"`
	MarksEchoed    int64  `json:"marksEchoed"` // marks that came back
	// Digits are the DTMF digits received, in order, across calls (the last
	// MaxDigits of them).
	Digits string `json:"digits"`
	// ProtocolErrors counts messages the agent could not use: binary frames,
	// invalid JSON, unknown events, media before start.
	ProtocolErrors int64 `json:"protocolErrors"`
	// Unauthorized counts handshakes refused for a missing or wrong
	// RequireHeader.
	Unauthorized int64 `json:"unauthorized"`
	// LastQuery is the query string of the latest accepted handshake.
	LastQuery string `json:"lastQuery"`
}

// Stats returns a snapshot of the agent's counters. It is safe to call
// concurrently with live streams.
func (a *Agent) Stats() Stats {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.stats
}

// StatsHandler answers GET with Stats as JSON.
func (a *Agent) StatsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(a.Stats())
	})
}

// update applies f to the counters under the lock.
func (a *Agent) update(f func(*Stats)) {
	a.mu.Lock()
	f(&a.stats)
	a.mu.Unlock()
}

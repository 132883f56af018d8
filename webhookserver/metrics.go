package webhookserver

import (
	"fmt"
	"slices"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/loquent/twilio-voice-operator/internal/egress"
)

// Route labels used in metrics.
const (
	routeVoice     = "voice"
	routeRecording = "recording"
	routeEvents    = "events"
	routeStatus    = "status"
	routeStream    = "stream"
)

// Directions of a bridged media stream, as metric labels.
const (
	dirTwilioToAgent = "twilio_to_agent"
	dirAgentToTwilio = "agent_to_twilio"
)

// Outcomes of dialling an agent, as metric labels (Server.dialAgent).
const (
	dialOK    = "ok"
	dialError = "error"
)

// Outcomes of a changed stream token key value, as metric labels.
const (
	reloadReloaded = "reloaded"
	reloadInvalid  = "invalid"
)

// recordingStatuses are the RecordingStatus values counted as themselves;
// any other is "other".
var recordingStatuses = []string{"in-progress", "completed", "absent", "failed", "paused", "stopped", "processing"}

// Metrics are the webhook server's Prometheus collectors. All of them are
// registered on the Registerer given to NewMetrics; nothing touches the global
// registry. Label values are drawn from small fixed sets so that no request
// can create unbounded series.
type Metrics struct {
	// Requests counts HTTP requests and WebSocket upgrades by route and outcome.
	Requests *prometheus.CounterVec
	// SignatureFailures counts rejected X-Twilio-Signature checks by route and reason.
	SignatureFailures *prometheus.CounterVec
	// ActiveStreams is the number of media stream WebSockets currently open.
	ActiveStreams prometheus.Gauge
	// Streams counts ended media streams by outcome.
	Streams *prometheus.CounterVec
	// FramesRelayed counts WebSocket frames written to the far side, by direction.
	FramesRelayed *prometheus.CounterVec
	// FramesDropped counts frames not relayed, by direction and reason.
	FramesDropped *prometheus.CounterVec
	// AgentDial observes how long dialling an agent took, by outcome.
	AgentDial *prometheus.HistogramVec
	// RecordingCallbacks counts recording status callbacks by RecordingStatus.
	RecordingCallbacks *prometheus.CounterVec
	// RecordingDuplicates counts recording callbacks already seen (same RecordingSid and status).
	RecordingDuplicates prometheus.Counter
	// RecordingDuration observes RecordingDuration of completed recordings.
	RecordingDuration prometheus.Histogram
	// RoutedNumbers is the number of phone numbers in the routing table.
	RoutedNumbers prometheus.Gauge
	// StreamTokenKeyReloads counts re-reads of the stream token keys that
	// found a change, by outcome (reloaded, invalid).
	StreamTokenKeyReloads *prometheus.CounterVec
	// AgentDialsRefused counts agent connections the egress policy refused,
	// by reason (loopback, link_local, own_port, not_allowed, ...).
	AgentDialsRefused *prometheus.CounterVec
	// Throttled counts requests and upgrades answered 429 because their
	// client failed authentication too often, by route.
	Throttled *prometheus.CounterVec
	// CapacityRefusals counts requests and upgrades answered 503 because a
	// per-replica cap was reached, by kind (connections, streams,
	// legacy_pending_streams).
	CapacityRefusals *prometheus.CounterVec
	// Events counts the events of recording callbacks and SMS webhooks by
	// CloudEvents type and result: delivered (the sink accepted it),
	// retried (delivery failed within the server's budget; Twilio was
	// answered 503 to send the callback again), failed (the sink refused it
	// for good, or the egress policy refused the sink; Twilio was answered
	// 2xx) or no_sink (none configured: logged only).
	Events *prometheus.CounterVec
	// EventDelivery observes how long delivering one event took within one
	// Twilio request (every attempt and wait), by result (delivered, retried,
	// failed).
	EventDelivery *prometheus.HistogramVec
	// MessageReplies counts the answers of sinks that took a message.received
	// event, by result: replied (the reply event became the webhook's
	// <Message>), none (no event: <Response/>), wrong_type (an event of
	// another type), invalid (not a valid event, or data that is no reply)
	// or too_long (a body over 1600 characters); the last three are ignored
	// with a log line, and Twilio gets <Response/>.
	MessageReplies *prometheus.CounterVec
}

// NewMetrics creates the collectors and registers them on reg. It fails if
// any of them is already registered there.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "twilio_webhook_requests_total",
			Help: "Webhook requests and stream upgrades by route and outcome.",
		}, []string{"route", "outcome"}),
		SignatureFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "twilio_webhook_signature_failures_total",
			Help: "Requests refused because X-Twilio-Signature was missing or did not validate, by route and reason.",
		}, []string{"route", "reason"}),
		ActiveStreams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "twilio_webhook_active_streams",
			Help: "Media stream WebSockets currently open.",
		}),
		Streams: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "twilio_webhook_streams_total",
			Help: "Media streams that ended, by outcome.",
		}, []string{"outcome"}),
		FramesRelayed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "twilio_webhook_stream_frames_relayed_total",
			Help: "Media stream frames relayed, by direction.",
		}, []string{"direction"}),
		FramesDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "twilio_webhook_stream_frames_dropped_total",
			Help: "Media stream frames dropped, by direction and reason (backpressure: the far side was too slow; binary: not a text frame; closed: the far side was gone).",
		}, []string{"direction", "reason"}),
		AgentDial: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "twilio_webhook_agent_dial_duration_seconds",
			Help:    "Time to open the WebSocket to a number's agent, by outcome.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"outcome"}),
		RecordingCallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "twilio_webhook_recording_callbacks_total",
			Help: "Recording status callbacks accepted, by RecordingStatus (duplicates included).",
		}, []string{"status"}),
		RecordingDuplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "twilio_webhook_recording_callbacks_duplicate_total",
			Help: "Recording status callbacks already seen (same RecordingSid and RecordingStatus), e.g. Twilio retries.",
		}),
		RecordingDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "twilio_webhook_recording_duration_seconds",
			Help:    "RecordingDuration of completed recordings (first delivery only).",
			Buckets: []float64{5, 15, 30, 60, 120, 300, 600, 1200, 3600},
		}),
		RoutedNumbers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "twilio_webhook_routed_numbers",
			Help: "Phone numbers in the routing table (all TwilioPhoneNumbers watched, enabled or not).",
		}),
		StreamTokenKeyReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "twilio_webhook_stream_token_key_reloads_total",
			Help: "Changed stream token key values read while running, by outcome (reloaded: now in use; invalid: refused, the keys in use stay).",
		}, []string{"outcome"}),
		AgentDialsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "twilio_webhook_agent_dials_refused_total",
			Help: "Agent connections refused by the egress policy before any packet was sent, by reason (loopback, link_local, unspecified, multicast, own_port, not_allowed, invalid).",
		}, []string{"reason"}),
		Throttled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "twilio_webhook_throttled_total",
			Help: "Requests and stream upgrades refused with 429 because their client failed signature or stream token checks too often, by route.",
		}, []string{"route"}),
		CapacityRefusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "twilio_webhook_capacity_refusals_total",
			Help: "Requests and stream upgrades refused with 503 because a per-replica cap was reached, by kind (connections, streams, legacy_pending_streams).",
		}, []string{"kind"}),
		Events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "twilio_webhook_events_total",
			Help: "Events of recording callbacks and SMS webhooks, by CloudEvents type and result (delivered: the sink accepted it; retried: not delivered, Twilio was answered 503 to retry; failed: the sink or the egress policy refused it for good; no_sink: none configured).",
		}, []string{"type", "result"}),
		EventDelivery: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "twilio_webhook_event_delivery_duration_seconds",
			Help:    "Time to deliver one event to its sink within one Twilio request, every attempt and wait included, by result (delivered, retried, failed).",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"result"}),
		MessageReplies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "twilio_webhook_message_replies_total",
			Help: "Answers of sinks that took an incoming-message event, by result (replied: sent back as the webhook's <Message>; none: no reply event; wrong_type, invalid, too_long: ignored, no reply).",
		}, []string{"result"}),
	}
	for _, c := range []prometheus.Collector{
		m.Requests, m.SignatureFailures, m.ActiveStreams, m.Streams, m.FramesRelayed, m.FramesDropped,
		m.AgentDial, m.RecordingCallbacks, m.RecordingDuplicates, m.RecordingDuration, m.RoutedNumbers,
		m.StreamTokenKeyReloads, m.AgentDialsRefused,
		m.Throttled, m.CapacityRefusals, m.Events, m.EventDelivery, m.MessageReplies,
	} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}
	m.initialise()
	return m, nil
}

// initialise creates the series of the label values each vector can take, at
// zero, so that every family is on /metrics from the start (dashboards and
// alerts see 0, not "no data") and rate() and increase() see a counter's
// first increment (from 0, not from a series that appears at 1).
func (m *Metrics) initialise() {
	requestOutcomes := map[string][]string{
		routeVoice: {outcomeOK, outcomeHangupUnknown, outcomeHangupDisabled, outcomeHangupWrongAcct, outcomeHangupNoAgent,
			outcomePreflight, outcomeForbidden, outcomeBadRequest, outcomeTooLarge, outcomeUnsupportedMedia,
			outcomeMethodNotAllowed, outcomeThrottled, outcomeUnavailable, outcomeOverCapacity},
		routeRecording: {outcomeOK, outcomeDuplicate, outcomeSinkUnavailable, outcomeForbidden, outcomeBadRequest, outcomeTooLarge,
			outcomeUnsupportedMedia, outcomeMethodNotAllowed, outcomeThrottled, outcomeOverCapacity},
		routeEvents: {outcomeOK, outcomeSinkUnavailable, outcomeForbidden, outcomeBadRequest, outcomeTooLarge, outcomeUnsupportedMedia,
			outcomeMethodNotAllowed, outcomeThrottled, outcomeOverCapacity},
		routeStatus: {outcomeOK, outcomeSinkUnavailable, outcomeForbidden, outcomeBadRequest, outcomeTooLarge, outcomeUnsupportedMedia,
			outcomeMethodNotAllowed, outcomeThrottled, outcomeOverCapacity},
		routeStream: {outcomeUpgraded, outcomeUpgradedLegacy, outcomeUpgradeFailed, outcomeForbidden, outcomeBadRequest,
			outcomeNotFound, outcomeMethodNotAllowed, outcomeThrottled, outcomeUnavailable, outcomeOverCapacity},
	}
	for route, outcomes := range requestOutcomes {
		for _, outcome := range outcomes {
			m.Requests.WithLabelValues(route, outcome)
		}
		for _, reason := range []string{sigMissing, sigUnknownAccount, sigInvalid} {
			m.SignatureFailures.WithLabelValues(route, reason)
		}
		m.Throttled.WithLabelValues(route)
	}
	for _, outcome := range []string{outcomeCallerClosed, outcomeCallerError, outcomeAgentClosed, outcomeAgentError, outcomeShutdown,
		outcomeAgentUnreachable, outcomeAgentRefused, outcomeTokenInvalid, outcomeTokenReused, outcomeSignatureInvalid,
		outcomeHandshakeFailed, outcomeNotRouted} {
		m.Streams.WithLabelValues(outcome)
	}
	for _, dir := range []string{dirTwilioToAgent, dirAgentToTwilio} {
		m.FramesRelayed.WithLabelValues(dir)
		for _, reason := range []string{dropBackpressure, dropBinary, dropClosed} {
			m.FramesDropped.WithLabelValues(dir, reason)
		}
	}
	for _, outcome := range []string{dialOK, dialError} {
		m.AgentDial.WithLabelValues(outcome)
	}
	for _, status := range append(recordingStatuses, recordingStatusOther) {
		m.RecordingCallbacks.WithLabelValues(status)
	}
	for _, outcome := range []string{reloadReloaded, reloadInvalid} {
		m.StreamTokenKeyReloads.WithLabelValues(outcome)
	}
	for _, reason := range []egress.Reason{egress.ReasonLoopback, egress.ReasonLinkLocal, egress.ReasonUnspecified,
		egress.ReasonMulticast, egress.ReasonOwnPort, egress.ReasonNotAllowed, egress.ReasonInvalid} {
		m.AgentDialsRefused.WithLabelValues(string(reason))
	}
	for _, kind := range []string{capConnections, capStreams, capLegacyStream} {
		m.CapacityRefusals.WithLabelValues(kind)
	}
	for _, typ := range eventTypes() {
		for _, result := range []string{eventDelivered, eventRetried, eventFailed, eventNoSink} {
			m.Events.WithLabelValues(typ, result)
		}
	}
	for _, result := range []string{eventDelivered, eventRetried, eventFailed} {
		m.EventDelivery.WithLabelValues(result)
	}
	for _, result := range replyResults {
		m.MessageReplies.WithLabelValues(result)
	}
}

// recordingStatusOther is the status label of any other RecordingStatus.
const recordingStatusOther = "other"

// recordingStatusLabel bounds the status label to Twilio's documented values.
func recordingStatusLabel(s string) string {
	if slices.Contains(recordingStatuses, s) {
		return s
	}
	return recordingStatusOther
}

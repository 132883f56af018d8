package twilio

import (
	"errors"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

var (
	requestsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "twilio_api_requests_total",
		Help: "Twilio REST calls by account, operation and result (ok, or the Twilio error code / class).",
	}, []string{"account", "operation", "result"})
	requestSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "twilio_api_request_duration_seconds",
		Help:    "Latency of Twilio REST calls by operation.",
		Buckets: prometheus.ExponentialBuckets(0.01, 2, 12),
	}, []string{"operation"})
)

func init() {
	metrics.Registry.MustRegister(requestsTotal, requestSeconds)
}

func observe(account, kind string, err error, d time.Duration) {
	result := "ok"
	if err != nil {
		var e *Error
		result = ClassOf(err).String()
		if errors.As(err, &e) && e.Code != 0 {
			result = strconv.Itoa(e.Code)
		}
	}
	requestsTotal.WithLabelValues(account, kind, result).Inc()
	requestSeconds.WithLabelValues(kind).Observe(d.Seconds())
}

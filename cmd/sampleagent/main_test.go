package main

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"testing"

	. "github.com/onsi/gomega"

	"github.com/loquent/twilio-voice-operator/internal/sampleagent"
)

func TestServeAnswersStatsAndStopsOnCancel(t *testing.T) {
	g := NewWithT(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	g.Expect(err).NotTo(HaveOccurred())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, ln, sampleagent.New(sampleagent.Options{}), "/media") }()

	resp, err := http.Get("http://" + ln.Addr().String() + "/stats")
	g.Expect(err).NotTo(HaveOccurred())
	var st sampleagent.Stats
	g.Expect(json.NewDecoder(resp.Body).Decode(&st)).To(Succeed())
	resp.Body.Close()
	g.Expect(st).To(Equal(sampleagent.Stats{}))

	cancel()
	g.Eventually(done).Should(Receive(BeNil()))
}

func TestServeRejectsAReservedPath(t *testing.T) {
	g := NewWithT(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	g.Expect(err).NotTo(HaveOccurred())
	defer ln.Close()
	g.Expect(serve(context.Background(), ln, sampleagent.New(sampleagent.Options{}), "/stats")).To(HaveOccurred())
}

package source

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/signature"
)

const secret = "agent-registry-secret-0123456789"

var registry = WebhookConfig{
	Name:   "agent-registry",
	Secret: "env:REG_SECRET",
	When:   `payload.event in ["agent.registered", "agent.updated", "agent.retired"]`,
	Map: map[string]string{
		"type":        `payload.event == "agent.registered" ? "joiner" : payload.event == "agent.retired" ? "leaver" : "mover"`,
		"id":          `payload.delivery`,
		"externalId":  `payload.agent.name`,
		"kind":        `"ai_agent"`,
		"owner":       `payload.agent.owner`,
		"attributes":  `{"tools": payload.agent.tools, "env": payload.agent.env}`,
		"effectiveAt": `has(payload.at) ? payload.at : null`,
	},
}

func compile(t *testing.T, cfg WebhookConfig) *Webhook {
	t.Helper()
	w, err := CompileWebhook(cfg, func(string) string { return secret })
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func TestMap(t *testing.T) {
	w := compile(t, registry)
	ev, ignored, err := w.Map([]byte(`{"event": "agent.registered", "delivery": "d-1",
		"agent": {"name": "triage-bot", "owner": "alice", "tools": ["read-tickets"], "env": "prod"}}`))
	if err != nil || ignored {
		t.Fatalf("Map = %v, %v", ignored, err)
	}
	if ev.Source != "agent-registry" || ev.Type != identity.Joiner || ev.ID != "d-1" || ev.ExternalID != "triage-bot" || ev.Kind != identity.AIAgent ||
		ev.Owner != "alice" || ev.Attributes["env"] != "prod" || ev.EffectiveAt != nil {
		t.Fatalf("event = %+v", ev)
	}
	if err := ev.Validate(); err != nil {
		t.Fatal(err)
	}
	ev, _, err = w.Map([]byte(`{"event": "agent.retired", "delivery": "d-2", "at": "2026-12-01T09:00:00Z", "agent": {"name": "triage-bot", "owner": "alice", "tools": [], "env": "prod"}}`))
	if err != nil || ev.Type != identity.Leaver || !ev.EffectiveAt.Equal(time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)) {
		t.Fatalf("retired = %+v, %v", ev, err)
	}
	if _, ignored, err := w.Map([]byte(`{"event": "agent.pinged"}`)); err != nil || !ignored {
		t.Fatalf("unmapped event: ignored %v, %v", ignored, err)
	}
	for _, tc := range []struct{ body, want string }{
		{`not json`, "payload is not JSON"},
		{`{"event": "agent.registered", "delivery": 7, "agent": {"name": "x", "owner": "a", "tools": [], "env": "p"}}`, "map.id: gave double, want a string"},
		{`{"event": "agent.registered", "delivery": "d", "agent": {"owner": "a", "tools": [], "env": "p"}}`, "map.externalId: no such key: name"},
	} {
		if _, _, err := w.Map([]byte(tc.body)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Map(%s) = %v, want %q", tc.body, err, tc.want)
		}
	}
}

func TestVerifyRequests(t *testing.T) {
	w := compile(t, registry)
	now := time.Now()
	body := []byte(`{"event": "agent.updated"}`)
	h := http.Header{}
	signature.SetHeaders(h, []byte(secret), body, now)
	if err := w.Verify(h, body, now); err != nil {
		t.Fatalf("good: %v", err)
	}
	if err := w.Verify(h, body, now.Add(6*time.Minute)); identity.ErrorCode(err) != identity.Unauthorized {
		t.Fatalf("stale: %v", err)
	}
	bad := http.Header{}
	signature.SetHeaders(bad, []byte("another-secret-of-enough-bytes"), body, now)
	if err := w.Verify(bad, body, now); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("wrong secret: %v", err)
	}
}

func TestCompileErrors(t *testing.T) {
	with := func(edit func(*WebhookConfig)) WebhookConfig {
		c := registry
		c.Map = map[string]string{}
		for k, v := range registry.Map {
			c.Map[k] = v
		}
		edit(&c)
		return c
	}
	for _, tc := range []struct {
		cfg  WebhookConfig
		env  string
		want string
	}{
		{with(func(c *WebhookConfig) { c.Secret = "plain-secret-value" }), secret, "must be a reference"},
		{registry, "short", "at least 16 bytes"},
		{with(func(c *WebhookConfig) { delete(c.Map, "id") }), secret, "map.id is required"},
		{with(func(c *WebhookConfig) { c.Map["colour"] = `"red"` }), secret, "map.colour: not an event field"},
		{with(func(c *WebhookConfig) { c.Map["owner"] = `payload.agent.owner +` }), secret, "map.owner: ERROR"},
		{with(func(c *WebhookConfig) { c.ReplayWindow = "a day" }), secret, "replayWindow"},
		{with(func(c *WebhookConfig) { c.Name = "bad name" }), secret, "source: name"},
	} {
		_, err := CompileWebhook(tc.cfg, func(string) string { return tc.env })
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("CompileWebhook = %v, want %q", err, tc.want)
		}
	}
}

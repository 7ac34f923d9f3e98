package identity

import (
	"strings"
	"testing"
)

func TestTransition(t *testing.T) {
	tests := []struct {
		from    State
		ev      EventType
		future  bool
		want    State
		wantErr string
	}{
		{None, Joiner, false, Active, ""},
		{None, Joiner, true, Pending, ""},
		{Departed, Joiner, false, Active, ""}, // rehire
		{Active, Joiner, false, "", "illegal transition: joiner is not allowed for an identity that is active"},
		{Pending, Joiner, false, "", "illegal transition"},
		{Active, Mover, false, Active, ""},
		{Pending, Mover, false, Pending, ""},
		{Suspended, Mover, false, Suspended, ""},
		{Departed, Mover, false, "", "illegal transition: mover is not allowed for an identity that is departed"},
		{None, Mover, false, "", "unknown (no such identity)"},
		{Active, Leaver, false, Departed, ""},
		{Pending, Leaver, false, Departed, ""},
		{Suspended, Leaver, false, Departed, ""},
		{Departed, Leaver, false, "", "illegal transition"},
		{Active, Suspend, false, Suspended, ""},
		{Suspended, Suspend, false, "", "illegal transition"},
		{Suspended, Resume, false, Active, ""},
		{Active, Resume, false, "", "illegal transition: resume is not allowed for an identity that is active"},
		{Active, "promote", false, "", `unknown event type "promote"`},
	}
	for _, tt := range tests {
		t.Run(string(tt.from)+"/"+string(tt.ev), func(t *testing.T) {
			got, err := Transition(tt.from, tt.ev, tt.future)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Transition(%q, %q) error = %v, want containing %q", tt.from, tt.ev, err, tt.wantErr)
				}
				if c := ErrorCode(err); c != Conflict && c != Invalid {
					t.Fatalf("code = %q, want conflict or invalid", c)
				}
				return
			}
			if err != nil {
				t.Fatalf("Transition(%q, %q): %v", tt.from, tt.ev, err)
			}
			if got != tt.want {
				t.Fatalf("Transition(%q, %q) = %q, want %q", tt.from, tt.ev, got, tt.want)
			}
		})
	}
}

func TestActivate(t *testing.T) {
	if got, err := Activate(Pending); err != nil || got != Active {
		t.Fatalf("Activate(pending) = %q, %v", got, err)
	}
	for _, s := range []State{None, Active, Suspended, Departed} {
		if _, err := Activate(s); ErrorCode(err) != Conflict {
			t.Fatalf("Activate(%q) error = %v, want conflict", s, err)
		}
	}
}

func TestEventValidate(t *testing.T) {
	base := func() Event {
		return Event{Source: "hr", ID: "e1", Type: Joiner, ExternalID: "alice", Kind: Human}
	}
	tests := []struct {
		name      string
		edit      func(*Event)
		wantField string
	}{
		{"ok", func(*Event) {}, ""},
		{"no source", func(e *Event) { e.Source = "" }, "source"},
		{"no id", func(e *Event) { e.ID = "" }, "id"},
		{"bad external id", func(e *Event) { e.ExternalID = "a b" }, "externalId"},
		{"unknown type", func(e *Event) { e.Type = "hire" }, "type"},
		{"unknown kind", func(e *Event) { e.Kind = "robot" }, "kind"},
		{"joiner without kind", func(e *Event) { e.Kind = "" }, "kind"},
		{"nhi without owner", func(e *Event) { e.Kind = Pipeline }, "owner"},
		{"nhi with owner", func(e *Event) { e.Kind = Pipeline; e.Owner = "alice2" }, ""},
		{"owns itself", func(e *Event) { e.Kind = AIAgent; e.Owner = "alice" }, "owner"},
		{"bad attribute name", func(e *Event) { e.Attributes = map[string]any{"a-b": "x"} }, "attributes"},
		{"object attribute", func(e *Event) { e.Attributes = map[string]any{"x": map[string]any{}} }, "attributes.x"},
		{"null on joiner", func(e *Event) { e.Attributes = map[string]any{"x": nil} }, "attributes.x"},
		{"null on mover", func(e *Event) { e.Type = Mover; e.Attributes = map[string]any{"x": nil} }, ""},
		{"list of numbers", func(e *Event) { e.Attributes = map[string]any{"tools": []any{1.0}} }, "attributes.tools[0]"},
		{"long value", func(e *Event) { e.Attributes = map[string]any{"x": strings.Repeat("a", 2000)} }, "attributes.x"},
		{"mover needs no kind", func(e *Event) { e.Type = Mover; e.Kind = "" }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := base()
			tt.edit(&e)
			err := e.Validate()
			if tt.wantField == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			var ie *Error
			if err == nil {
				t.Fatalf("Validate = nil, want error on %s", tt.wantField)
			}
			ie, _ = err.(*Error)
			if ie == nil || ie.Field != tt.wantField || ie.Code != Invalid {
				t.Fatalf("Validate = %#v, want invalid on field %q", err, tt.wantField)
			}
		})
	}
}

func TestApplyAttributes(t *testing.T) {
	got := ApplyAttributes(map[string]any{"a": "1", "b": "2"}, map[string]any{"b": nil, "c": []string{"x"}})
	if len(got) != 2 || got["a"] != "1" || got["b"] != nil {
		t.Fatalf("ApplyAttributes = %v", got)
	}
	if l, ok := got["c"].([]any); !ok || len(l) != 1 || l[0] != "x" {
		t.Fatalf("c = %#v, want []any{\"x\"}", got["c"])
	}
}

package yamlin

import (
	"errors"
	"strings"
	"testing"
)

type inner struct {
	Name        string `yaml:"name"`
	MaxDuration string `yaml:"maxDuration"`
	Skip        string `yaml:"-"`
}

type guard struct {
	MaxLeavers int `yaml:"maxLeavers"`
}

type outer struct {
	Items    []inner           `yaml:"items"`
	ByName   map[string]inner  `yaml:"byName"`
	Free     map[string]any    `yaml:"free"`
	Ptr      *inner            `yaml:"ptr"`
	Guarded  []guarded         `yaml:"guarded"`
	Counters map[string]string `yaml:"counters"`
}

type guarded struct {
	Source string `yaml:"source"`
	guard  `yaml:",inline"`
}

func TestDecode(t *testing.T) {
	for _, tc := range []struct {
		doc, want string // want "" : decodes
	}{
		{"items:\n  - name: a\n    maxDuration: 1h\nfree: {anything: [1, {x: y}]}\n", ""},
		{"", ""},
		{"items:\n  - name: a\n  - name: b\n    maxDuraton: 1h\n",
			`items[1]: unknown key "maxDuraton" on line 4 (allowed: name, maxDuration; did you mean maxDuration?)`},
		{"itmes: []\n", `unknown key "itmes" on line 1 (allowed: items, byName, free, ptr, guarded, counters; did you mean items?)`},
		{"byName:\n  x:\n    nmae: a\n", `byName.x: unknown key "nmae" on line 3`},
		{"ptr: {name: a, Skip: b}\n", `ptr: unknown key "Skip"`},
		{"guarded:\n  - source: hr\n    maxLeavers: 3\n  - source: hr\n    maxleavers: 3\n", `guarded[1]: unknown key "maxleavers" on line 5 (allowed: source, maxLeavers; did you mean maxLeavers?)`},
		{"base: &b {name: a, bad: 1}\n", `unknown key "base"`},
		{"items:\n  - &b {name: a}\n  - <<: *b\n    extra: 1\n", `items[1]: unknown key "extra"`},
		{"items:\n  - &b {name: a, wrong: 1}\n", `items[0]: unknown key "wrong"`},
		// A value of the wrong shape names its path and line, not Go types.
		{"items: [{name: [1]}]\n", "items[0].name: on line 1, want text, got a list"},
		{"items: 5\n", `items: on line 1, want a list, got "5"`},
		{"byName: [a]\n", "byName: on line 1, want a mapping (key: value), got a list"},
		{"items:\n  - {name: {a: b}}\n", "items[0].name: on line 2, want text, got a mapping (key: value)"},
		{"items: ~\n", ""},
	} {
		var v outer
		err := Decode([]byte(tc.doc), &v)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("Decode(%q) = %v", tc.doc, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("Decode(%q) = %v, want %s", tc.doc, err, tc.want)
		}
	}
	var v outer
	err := Decode([]byte("items: [{nam: a}]"), &v)
	var uk *UnknownKeyError
	if !errors.As(err, &uk) || uk.Path != "items[0]" || uk.Key != "nam" || uk.Line != 1 {
		t.Fatalf("Decode = %#v", err)
	}
}

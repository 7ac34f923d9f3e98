package signature

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

const secret = "0123456789abcdef-secret"

func TestVerify(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	body := []byte(`{"id":"k"}`)
	sign := func(ts time.Time, b []byte, key string) http.Header {
		h := http.Header{}
		SetHeaders(h, []byte(key), b, ts)
		return h
	}
	for _, tc := range []struct {
		name string
		h    http.Header
		body []byte
		want string
	}{
		{"good", sign(now, body, secret), body, ""},
		{"tampered body", sign(now, body, secret), []byte(`{"id":"x"}`), "does not match"},
		{"wrong secret", sign(now, body, "wrong-secret-xxxxxxxx"), body, "does not match"},
		{"stale", sign(now.Add(-6*time.Minute), body, secret), body, "outside the replay window"},
		{"from the future", sign(now.Add(6*time.Minute), body, secret), body, "outside the replay window"},
		{"no timestamp", http.Header{}, body, "is not a Unix time"},
		{"timestamp edited", func() http.Header {
			h := sign(now, body, secret)
			h.Set(HeaderTimestamp, strconv.FormatInt(now.Unix()+1, 10))
			return h
		}(), body, "does not match"},
	} {
		err := Verify([]byte(secret), tc.h, tc.body, now, 5*time.Minute)
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: Verify = %v, want %q", tc.name, err, tc.want)
		}
	}
}

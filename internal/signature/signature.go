// Package signature signs and verifies webhook requests, the scheme jml
// uses both ways (steps it sends to systems without a connector, events
// sources send to it): X-JML-Timestamp is the Unix time in seconds and
// X-JML-Signature is "v1=" and the lower-case hex of
// HMAC-SHA256(secret, timestamp + "." + body). A receiver checks the
// signature in constant time and refuses a timestamp outside its replay
// window.
package signature

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// Header names.
const (
	HeaderTimestamp = "X-JML-Timestamp"
	HeaderSignature = "X-JML-Signature"
)

// Sign returns the X-JML-Signature value for body sent at ts (Unix
// seconds, as sent in X-JML-Timestamp).
func Sign(secret []byte, ts string, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte("."))
	m.Write(body)
	return "v1=" + hex.EncodeToString(m.Sum(nil))
}

// SetHeaders signs body as sent at now and sets both headers on h.
func SetHeaders(h http.Header, secret []byte, body []byte, now time.Time) {
	ts := strconv.FormatInt(now.Unix(), 10)
	h.Set(HeaderTimestamp, ts)
	h.Set(HeaderSignature, Sign(secret, ts, body))
}

// Verify checks a request's signature and that its timestamp is within
// window of now.
func Verify(secret []byte, h http.Header, body []byte, now time.Time, window time.Duration) error {
	ts := h.Get(HeaderTimestamp)
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("%s: %q is not a Unix time", HeaderTimestamp, ts)
	}
	if d := now.Sub(time.Unix(sec, 0)); d > window || d < -window {
		return fmt.Errorf("%s: %s is outside the replay window of %s", HeaderTimestamp, time.Unix(sec, 0).UTC().Format(time.RFC3339), window)
	}
	if !hmac.Equal([]byte(h.Get(HeaderSignature)), []byte(Sign(secret, ts, body))) {
		return errors.New(HeaderSignature + ": signature does not match")
	}
	return nil
}

// Package e2e holds end-to-end tests: the engine, a real store and every
// connector against real servers, checked the way an attacker would, by
// trying to log in.
package e2e

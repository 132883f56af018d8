package twilio

import (
	"errors"
	"fmt"

	twclient "github.com/twilio/twilio-go/client"
)

// Class says how a caller should react to a failed Twilio call. Errors are
// classified once, here; reconcilers switch on the class, never on strings.
type Class int

const (
	// ClassTransient is a 5xx, a network failure or an unreadable answer. Retry with backoff.
	ClassTransient Class = iota
	// ClassWait is a 429 from Twilio (too many concurrent requests). The request
	// was not processed; retry after backing off.
	ClassWait
	// ClassTerminal is a refusal (4xx). Retrying the same request
	// cannot succeed until something changes (credentials, the account, the spec).
	ClassTerminal
)

func (c Class) String() string {
	switch c {
	case ClassWait:
		return "Wait"
	case ClassTerminal:
		return "Terminal"
	default:
		return "Transient"
	}
}

// Twilio error codes the operator reacts to.
const (
	codeAuthenticate     = 20003
	codeNotFound         = 20404
	codeTooManyRequests  = 20429
	codeInvalidUsername  = 21222
	codeInvalidPassword  = 21224
	statusTooManyRequest = 429
)

// ErrNumberNotFound is returned when a number is not in the account.
var ErrNumberNotFound = errors.New("phone number not found in the Twilio account")

// ErrNumberUnavailable matches (errors.Is) a purchase Twilio refused
// because the number is not on sale: someone else bought it, it is
// reserved, or nothing is on sale in the area code. The *Error keeps its
// class (Terminal): buying the same number again cannot succeed.
var ErrNumberUnavailable = errors.New("phone number not available for purchase")

// Twilio codes of ErrNumberUnavailable: 21422 "PhoneNumber is not
// available" and 21452 "No phone numbers found in area code".
const (
	codeNumberUnavailable   = 21422
	codeNoNumbersInAreaCode = 21452
)

// Error is a failed Twilio call, classified.
type Error struct {
	// Op names the call, e.g. "update IncomingPhoneNumber PN…".
	Op string
	// Class says whether to retry.
	Class Class
	// Status is the HTTP status Twilio answered, 0 when none arrived.
	Status int
	// Code is Twilio's error code (https://www.twilio.com/docs/errors/<code>), 0 when none.
	Code int
	// Err is the underlying error.
	Err error
}

func (e *Error) Error() string {
	if e.Code != 0 {
		return fmt.Sprintf("%s: Twilio error %d (HTTP %d): %s", e.Op, e.Code, e.Status, message(e.Err))
	}
	return fmt.Sprintf("%s: %v", e.Op, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrNumberUnavailable) true for Twilio's
// "not available" answers to a purchase.
func (e *Error) Is(target error) bool {
	return target == ErrNumberUnavailable && (e.Code == codeNumberUnavailable || e.Code == codeNoNumbersInAreaCode)
}

func message(err error) string {
	var tre *twclient.TwilioRestError
	if errors.As(err, &tre) {
		return tre.Message
	}
	return err.Error()
}

// ClassOf returns the class of err; errors that are not *Error are transient.
func ClassOf(err error) Class {
	var e *Error
	if errors.As(err, &e) {
		return e.Class
	}
	return ClassTransient
}

// IsNotFound reports whether err says the resource does not exist in the account.
func IsNotFound(err error) bool {
	if errors.Is(err, ErrNumberNotFound) {
		return true
	}
	var e *Error
	return errors.As(err, &e) && (e.Code == codeNotFound || e.Status == 404)
}

// IsAuth reports whether err says the credentials were refused or unusable.
func IsAuth(err error) bool {
	var e *Error
	if !errors.As(err, &e) {
		return false
	}
	switch e.Code {
	case codeAuthenticate, codeInvalidUsername, codeInvalidPassword:
		return true
	}
	return e.Status == 401
}

// classify wraps a twilio-go error with its class.
func classify(op string, err error) error {
	if err == nil {
		return nil
	}
	e := &Error{Op: op, Class: ClassTransient, Err: err}
	var tre *twclient.TwilioRestError
	if errors.As(err, &tre) {
		e.Status, e.Code = tre.Status, tre.Code
		switch {
		case tre.Status == statusTooManyRequest || tre.Code == codeTooManyRequests:
			e.Class = ClassWait
		case tre.Status >= 500:
			e.Class = ClassTransient
		case tre.Status >= 400:
			e.Class = ClassTerminal
		}
	}
	return e
}

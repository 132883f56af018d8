// Package controllers holds the operator's reconcilers. The TwilioPhoneNumber
// reconciler points a number's Voice URL at the webhook server after saving
// its original routing, and restores that routing exactly on Disabled or
// delete; the TwilioAccount reconciler verifies credentials and reports the
// account. Both share one Twilio client and number inventory per account.
package controllers

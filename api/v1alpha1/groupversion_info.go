// Package v1alpha1 contains the API types of the twilio.loquent.io group:
// TwilioAccount (a Twilio account whose numbers this cluster may route) and
// TwilioPhoneNumber (one number's desired inbound voice routing).
// +kubebuilder:object:generate=true
// +groupName=twilio.loquent.io
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the group and version of these types.
	GroupVersion = schema.GroupVersion{Group: "twilio.loquent.io", Version: "v1alpha1"}

	// SchemeBuilder registers these types with a runtime.Scheme.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds these types to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion,
		&TwilioAccount{}, &TwilioAccountList{},
		&TwilioPhoneNumber{}, &TwilioPhoneNumberList{},
	)
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}

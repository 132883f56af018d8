package webhookserver

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	toolscache "k8s.io/client-go/tools/cache"
)

// secretWatch follows one Secret through an informer whose list and watch are
// narrowed to that name (fieldSelector metadata.name=...), so the server never
// lists or caches other Secrets. Only one key's value is kept in memory.
type secretWatch struct {
	dataKey  string
	informer toolscache.SharedIndexInformer
	cancel   context.CancelFunc
	done     chan struct{}
}

func startSecretWatch(ctx context.Context, cs kubernetes.Interface, key types.NamespacedName, dataKey string, onChange func()) *secretWatch {
	lw := toolscache.NewFilteredListWatchFromClient(cs.CoreV1().RESTClient(), "secrets", key.Namespace, func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("metadata.name", key.Name).String()
	})
	inf := toolscache.NewSharedIndexInformer(lw, &corev1.Secret{}, 0, toolscache.Indexers{})
	// Keep nothing but dataKey: no other data, labels or annotations in memory.
	_ = inf.SetTransform(func(obj any) (any, error) {
		s, ok := obj.(*corev1.Secret)
		if !ok {
			return obj, nil
		}
		slim := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{
			Name: s.Name, Namespace: s.Namespace, UID: s.UID, ResourceVersion: s.ResourceVersion,
		}}
		if v, ok := s.Data[dataKey]; ok {
			slim.Data = map[string][]byte{dataKey: v}
		}
		return slim, nil
	})
	notify := toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { onChange() },
		UpdateFunc: func(any, any) { onChange() },
		DeleteFunc: func(any) { onChange() },
	}
	_, _ = inf.AddEventHandler(notify)
	ctx, cancel := context.WithCancel(ctx)
	w := &secretWatch{informer: inf, cancel: cancel, done: make(chan struct{}), dataKey: dataKey}
	go func() {
		defer close(w.done)
		inf.RunWithContext(ctx)
	}()
	return w
}

// value returns the Secret's dataKey value, if the Secret exists and has one.
func (w *secretWatch) value() ([]byte, bool) {
	for _, obj := range w.informer.GetStore().List() {
		if s, ok := obj.(*corev1.Secret); ok {
			if v, ok := s.Data[w.dataKey]; ok && len(v) > 0 {
				return v, true
			}
		}
	}
	return nil, false
}

// stop ends the informer and waits for it.
func (w *secretWatch) stop() {
	w.cancel()
	<-w.done
}

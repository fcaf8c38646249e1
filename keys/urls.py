from django.urls import path

from keys import views

urlpatterns = [
    path("v2/keys", views.KeysView.as_view()),
    path("v2/keys/check", views.CheckKeysView.as_view()),
    path("v2/keys/signed", views.SignedKeyView.as_view()),
    path("v2/keys/<str:service_id>/<str:device_id>", views.PreKeyBundleView.as_view()),
]

from django.urls import path

from push import views

# Signal declares these paths with a trailing slash and its clients call them so; both forms work.
urlpatterns = [
    path("v1/accounts/gcm/", views.FcmTokenView.as_view()),
    path("v1/accounts/gcm", views.FcmTokenView.as_view()),
    path("v1/accounts/apn/", views.ApnTokenView.as_view()),
    path("v1/accounts/apn", views.ApnTokenView.as_view()),
]

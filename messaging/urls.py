from django.urls import path

from messaging import views

urlpatterns = [
    path("v1/messages", views.messages_endpoint),
    path("v1/messages/multi_recipient", views.MultiRecipientMessageView.as_view()),
    path("v1/messages/uuid/<str:guid>", views.DeleteMessageView.as_view()),
    path("v1/messages/report/<str:source>/<str:guid>", views.ReportSpamView.as_view()),
    path("v1/messages/<str:destination>", views.SendMessageView.as_view()),
    path("v1/certificate/delivery", views.DeliveryCertificateView.as_view()),
]
